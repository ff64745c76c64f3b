"""Few-shot learners behind one protocol: ``loss(episode)`` and ``adapt(episode) -> Predictor``.

``LEARNERS`` maps registry names to classes; ``get_learner(name, encoder,
**options)`` builds one. A new method is one file with a ``Learner``
subclass and one line in ``LEARNERS``.

=============  ==============================================  ===============
name           method                                          meta-trainable
=============  ==============================================  ===============
finetune       linear tagger trained on the support set        no
protonet       prototypical network (ProtoBERT)                yes
nnshot         nearest support word                            yes
structshot     NNShot + Viterbi with abstract transitions      yes (as NNShot)
zeroshot       type-name prototypes + O threshold              yes
=============  ==============================================  ===============

Taught in: chapter 3.2 (Algorithm steps); chapter 5.2 (Source code).
"""

from __future__ import annotations

from typing import Any

from ..encoders import Encoder, load_encoder
from .base import (
    EpisodeMismatchError,
    Learner,
    NotMetaTrainableError,
    Predictor,
    WordScorePredictor,
    support_only,
)
from .finetune import FineTune, train_linear_head
from .protonet import (
    NNShot,
    ProtoNet,
    StructShot,
    ViterbiPredictor,
    class_prototypes,
    nearest_neighbour_scores,
    prototype_scores,
    prototypical_loss,
    sibling_backoff,
    squared_distances,
)
from .viterbi import AbstractTransitions, estimate_transitions, transition_scores, viterbi_decode
from .zeroshot import DESCRIPTIONS, ZeroShot, describe, embed_descriptions, label_name_vectors

#: Registry name -> learner class.
LEARNERS: dict[str, type[Learner]] = {
    "finetune": FineTune,
    "protonet": ProtoNet,
    "nnshot": NNShot,
    "structshot": StructShot,
    "zeroshot": ZeroShot,
}


def get_learner(name: str, encoder: Encoder | str | None = None, **options: Any) -> Learner:
    """Build a registered learner.

    Arguments:
        name: a key of ``LEARNERS`` (case-insensitive).
        encoder: an ``Encoder``, or a name/path for ``load_encoder`` (None:
            the offline MiniLM).
        **options: the learner's keyword arguments (e.g. ``train_sentences=``
            for StructShot and ZeroShot, ``train_layers=`` for FineTune).

    Raises:
        KeyError: unknown name; the message lists the registry.

    Example:
        >>> learner = get_learner("protonet")  # doctest: +SKIP
    """
    key = name.lower()
    if key not in LEARNERS:
        raise KeyError(f"unknown learner {name!r}; registered learners: {', '.join(sorted(LEARNERS))}")
    if not isinstance(encoder, Encoder):
        encoder = load_encoder(encoder)
    return LEARNERS[key](encoder, **options)


__all__ = [
    "DESCRIPTIONS",
    "LEARNERS",
    "AbstractTransitions",
    "EpisodeMismatchError",
    "FineTune",
    "Learner",
    "NNShot",
    "NotMetaTrainableError",
    "Predictor",
    "ProtoNet",
    "StructShot",
    "ViterbiPredictor",
    "WordScorePredictor",
    "ZeroShot",
    "class_prototypes",
    "describe",
    "embed_descriptions",
    "estimate_transitions",
    "get_learner",
    "label_name_vectors",
    "nearest_neighbour_scores",
    "prototype_scores",
    "prototypical_loss",
    "sibling_backoff",
    "squared_distances",
    "support_only",
    "train_linear_head",
    "transition_scores",
    "viterbi_decode",
]
