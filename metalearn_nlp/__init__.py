"""metalearn-nlp: meta-learning for NLP, from derivations to few-shot NER.

The package behind the book. The main entry points are importable from the
top, so a few-shot NER experiment reads::

    from metalearn_nlp import FewNERDSampler, evaluate, get_learner, load_corpus, split_types

    corpus = load_corpus("wnut16")
    groups = split_types(corpus.sentences("train"), train_types, [], test_types)
    episodes = FewNERDSampler(groups["test"], ways=5, shots=1, seed=0).episodes(100)
    report = evaluate(get_learner("protonet"), episodes)

They load lazily: ``import metalearn_nlp`` imports none of torch,
transformers or datasets; a name is imported from its module
(``metalearn_nlp.data``, ``.encoders``, ``.learners``, ``.training``,
``.evaluation``, ``.notebook``) the first time it is used. Every module is
importable on its own.

Taught in: chapter 5.2 (Source code).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> the module it is imported from, on first use
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        [
            "WNUT16_SPLIT", "ClassSampler", "CrossDatasetSampler", "Episode", "FewNERDSampler", "LabelledText",
            "TaggedSentence", "entity_scores", "hold_out", "load_corpus", "load_episodes", "read_conll",
            "save_episodes", "split_types", "write_conll",
        ],
        "metalearn_nlp.data",
    ),
    "Encoder": "metalearn_nlp.encoders",
    "load_encoder": "metalearn_nlp.encoders",
    "LEARNERS": "metalearn_nlp.learners",
    "get_learner": "metalearn_nlp.learners",
    "meta_train": "metalearn_nlp.training",
    "Trainer": "metalearn_nlp.training",
    "TrainingDivergedError": "metalearn_nlp.training",
    "load_checkpoint": "metalearn_nlp.checkpoints",
    "Report": "metalearn_nlp.evaluation",
    "evaluate": "metalearn_nlp.evaluation",
    "summarize": "metalearn_nlp.evaluation",
    "scaled": "metalearn_nlp.notebook",
    "train_or_load": "metalearn_nlp.notebook",
    "resolve_device": "metalearn_nlp.devices",
    "autocast": "metalearn_nlp.devices",
    "LearnerFileError": "metalearn_nlp.saving",
    "load_learner": "metalearn_nlp.saving",
    "read_learner_config": "metalearn_nlp.saving",
    "save_learner": "metalearn_nlp.saving",
    "Entity": "metalearn_nlp.tagger",
    "Tagger": "metalearn_nlp.tagger",
    "Word": "metalearn_nlp.tagger",
    "split_words": "metalearn_nlp.tagger",
}  # fmt: skip

__all__ = ["__version__", *sorted(_EXPORTS)]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load lazily
    from .data import (
        WNUT16_SPLIT,
        ClassSampler,
        CrossDatasetSampler,
        Episode,
        FewNERDSampler,
        LabelledText,
        TaggedSentence,
        entity_scores,
        hold_out,
        load_corpus,
        load_episodes,
        read_conll,
        save_episodes,
        split_types,
        write_conll,
    )
    from .encoders import Encoder, load_encoder
    from .evaluation import Report, evaluate, summarize
    from .devices import autocast, resolve_device
    from .learners import LEARNERS, get_learner
    from .notebook import scaled, train_or_load
    from .saving import LearnerFileError, load_learner, read_learner_config, save_learner
    from .tagger import Entity, Tagger, Word, split_words
    from .checkpoints import load_checkpoint
    from .training import Trainer, TrainingDivergedError, meta_train


def __getattr__(name: str) -> Any:
    """Import an entry point from its module on first use (PEP 562), and keep it."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
