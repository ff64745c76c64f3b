"""The data path: corpora, tag schemes, subword alignment, episodes and samplers.

Importing this package is cheap: ``datasets`` and ``torch`` are imported by
the functions that need them (``load_corpus``, ``collate``).

Taught in: chapter 2 (episodes and samplers); chapter 5.1 Preparing the data.
"""

from .collate import Batch, TruncationReport, TruncationWarning, collate
from .conll import ConllFormatError, ReadReport, read_conll, write_conll
from .corpora import CORPORA, Corpus, CorpusUnavailableError, load_corpus
from .episodes import (
    CLASS_SCHEME,
    WNUT16_SPLIT,
    ClassSampler,
    CrossDatasetSampler,
    Episode,
    EpisodeFileError,
    EpisodeSamplingError,
    Example,
    FewNERDSampler,
    LabelledText,
    TaggedSentence,
    hold_out,
    load_episodes,
    save_episodes,
    split_types,
)
from .tags import (
    SCHEMES,
    EntityScores,
    Span,
    align_labels,
    convert_tags,
    entity_scores,
    entity_types,
    parse_tag,
    repair_bio,
    spans,
    spans_to_tags,
)

__all__ = [
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
    "Span",
    "TaggedSentence",
    "TruncationReport",
    "TruncationWarning",
    "align_labels",
    "collate",
    "convert_tags",
    "entity_scores",
    "entity_types",
    "hold_out",
    "load_corpus",
    "load_episodes",
    "parse_tag",
    "read_conll",
    "repair_bio",
    "save_episodes",
    "spans",
    "spans_to_tags",
    "split_types",
    "write_conll",
]
