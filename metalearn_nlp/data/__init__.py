"""The data path: corpora, tag schemes, subword alignment, episodes and samplers.

Modules: ``tags`` (tag schemes, spans, entity scores), ``conll`` (the CoNLL
reader and writer), ``corpora`` (named corpora), ``collate`` (subword
alignment), ``episode`` (examples and episodes), ``samplers`` (episode
samplers), ``splits`` (type-disjoint splits), ``files`` (episode files),
``perturb`` (entity swaps, case changes and typos).

Importing this package is cheap: ``datasets`` and ``torch`` are imported by
the functions that need them (``load_corpus``, ``collate``).

Taught in: chapter 2 (episodes and samplers); chapter 5.1 Preparing the data.
"""

from .collate import Batch, TruncationReport, TruncationWarning, collate
from .conll import ConllFormatError, ReadReport, read_conll, write_conll
from .corpora import CORPORA, Corpus, CorpusUnavailableError, SkippedFilesWarning, load_corpus
from .episode import CLASS_SCHEME, Episode, Example, LabelledText, TaggedSentence
from .fewnerd import fewnerd_episode, is_fewnerd_file, load_episode_file, load_fewnerd_episodes
from .files import EpisodeFileError, canonical_json, load_episodes, save_episodes
from .intents import INTENT_SETS, OOS, IntentFormatError, IntentSet, load_intents, read_intent_jsonl, split_intents
from .perturb import add_typos, change_case, mention_pool, perturb_episode, replace_mentions
from .samplers import ClassSampler, CrossDatasetSampler, EpisodeSamplingError, FewNERDSampler
from .splits import WNUT16_SPLIT, hold_out, split_types
from .tags import (
    SCHEMES,
    EntityScores,
    Span,
    align_labels,
    convert_tags,
    count_entities,
    entity_scores,
    entity_types,
    parse_tag,
    repair_bio,
    spans,
    spans_to_tags,
)

__all__ = [
    "INTENT_SETS",
    "OOS",
    "IntentFormatError",
    "IntentSet",
    "load_intents",
    "read_intent_jsonl",
    "split_intents",
    "CLASS_SCHEME",
    "CORPORA",
    "SCHEMES",
    "WNUT16_SPLIT",
    "Batch",
    "ClassSampler",
    "ConllFormatError",
    "Corpus",
    "CorpusUnavailableError",
    "CrossDatasetSampler",
    "EntityScores",
    "Episode",
    "EpisodeFileError",
    "EpisodeSamplingError",
    "Example",
    "FewNERDSampler",
    "LabelledText",
    "ReadReport",
    "SkippedFilesWarning",
    "Span",
    "TaggedSentence",
    "TruncationReport",
    "TruncationWarning",
    "add_typos",
    "align_labels",
    "canonical_json",
    "change_case",
    "collate",
    "convert_tags",
    "count_entities",
    "entity_scores",
    "entity_types",
    "fewnerd_episode",
    "hold_out",
    "is_fewnerd_file",
    "load_corpus",
    "load_episode_file",
    "load_episodes",
    "load_fewnerd_episodes",
    "mention_pool",
    "parse_tag",
    "perturb_episode",
    "read_conll",
    "repair_bio",
    "replace_mentions",
    "save_episodes",
    "spans",
    "spans_to_tags",
    "split_types",
    "write_conll",
]
