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
maml           second-order MAML, top layers + learned head    yes
fomaml         first-order MAML                                yes
anil           MAML on the head only (ANIL)                    yes
protomaml      MAML from the prototypes' linear head           yes
reptile        Reptile (step toward the adapted weights)       yes
metasgd        MAML with learned per-weight inner rates        yes
learned_opt.   a learned coordinate-wise update rule           yes
reinforce      ProtoNet + REINFORCE on entity-F1               yes
transfer       source-supervised tagger, fine-tuned per task   yes (supervised)
decomposed     mention detector + span prototypes              yes
fgm            any learner + FGM adversarial embeddings        yes
intent_cent.   nearest centroid of pooled sentence vectors     no   (SENTENCE_LEARNERS)
intent_proto.  ProtoNet on pooled sentence vectors (intents)   yes  (SENTENCE_LEARNERS)
intent_pmaml   ProtoMAML on pooled sentence vectors            yes  (SENTENCE_LEARNERS)
=============  ==============================================  ===============

Modules: ``base`` (the protocol), ``metric`` (distances, prototypes and
type-name vectors shared by the metric learners), ``protonet`` (ProtoNet,
NNShot, StructShot), ``viterbi`` (StructShot's decoder), ``zeroshot`` and
``finetune``; the gradient-based learners in ``maml`` (on
:mod:`metalearn_nlp.inner_loop`), ``reptile``, ``metasgd``,
``learned_optimizer``; ``reinforce``.

Taught in: chapter 3.1 (prototypical networks); chapter 3.2 (MAML and its
relatives); chapter 3.3 (learning to optimise); chapter 3.4 (REINFORCE);
chapter 5.2 (Source code).
"""

from __future__ import annotations

import difflib
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
from .adversarial import FGM, fgm_loss
from .finetune import FineTune, train_linear_head
from .learned_optimizer import CoordinateRule, LearnedOptimizer
from .maml import ANIL, FOMAML, MAML, AdaptedPredictor, GradientLearner, ProtoMAML
from .metasgd import MetaSGD
from .metric import (
    DESCRIPTIONS,
    class_prototypes,
    describe,
    embed_descriptions,
    io_index,
    label_name_vectors,
    nearest_neighbour_scores,
    prototype_scores,
    prototypical_loss,
    sibling_backoff,
    squared_distances,
)
from .decomposed import Decomposed, DecomposedPredictor, decomposition_scores
from .protonet import NNShot, ProtoNet, StructShot, ViterbiPredictor
from .reinforce import Reinforce
from .reptile import Reptile
from .transfer import Transfer
from .sentence import OOS_LABEL, SentenceCentroid, SentencePredictor, SentenceProtoMAML, SentenceProtoNet
from .viterbi import AbstractTransitions, estimate_transitions, transition_scores, viterbi_decode
from .zeroshot import ZeroShot

#: Registry name -> learner class.
LEARNERS: dict[str, type[Learner]] = {
    "finetune": FineTune,
    "protonet": ProtoNet,
    "nnshot": NNShot,
    "structshot": StructShot,
    "zeroshot": ZeroShot,
    "maml": MAML,
    "fomaml": FOMAML,
    "anil": ANIL,
    "protomaml": ProtoMAML,
    "reptile": Reptile,
    "metasgd": MetaSGD,
    "learned_optimizer": LearnedOptimizer,
    "reinforce": Reinforce,
    "fgm": FGM,
    "transfer": Transfer,
    "decomposed": Decomposed,
}

#: Registry name -> sentence-level learner class (labelled texts, ``scheme="class"``;
#: chapter 6.1). Kept apart from ``LEARNERS``, whose learners all tag words;
#: ``get_learner`` builds both.
SENTENCE_LEARNERS: dict[str, type[Learner]] = {
    "intent_centroid": SentenceCentroid,
    "intent_protonet": SentenceProtoNet,
    "intent_protomaml": SentenceProtoMAML,
}


class UnknownLearnerError(ValueError, KeyError):
    """``get_learner`` got a name that is not in ``LEARNERS``.

    A ``ValueError`` (a bad argument) and, for code written when this was a
    plain ``KeyError``, a ``KeyError`` too. The message lists the registered
    names and suggests the closest one.

    Attributes:
        name: the name asked for.
        suggestion: the closest registered name, or None when none is close.
    """

    def __init__(self, name: str, registered: list[str]) -> None:
        self.name, self.registered = name, list(registered)
        close = difflib.get_close_matches(name.lower(), registered, n=1, cutoff=0.6)
        self.suggestion: str | None = close[0] if close else None
        hint = f" did you mean {self.suggestion!r}?" if self.suggestion else ""
        super().__init__(f"unknown learner {name!r};{hint} registered learners: {', '.join(registered)}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:  # pickles (e.g. across processes) with its own arguments
        return type(self), (self.name, self.registered)


def get_learner(name: str, encoder: Encoder | str | None = None, **options: Any) -> Learner:
    """Build a registered learner.

    Arguments:
        name: a key of ``LEARNERS`` (case-insensitive).
        encoder: an ``Encoder``, or a name/path for ``load_encoder`` (None:
            the offline MiniLM).
        **options: the learner's keyword arguments (e.g. ``train_sentences=``
            for StructShot and ZeroShot, ``train_layers=`` for FineTune).

    Raises:
        UnknownLearnerError: unknown name (a ``ValueError`` and a
            ``KeyError``); the message lists the registry and suggests the
            closest name.

    Example:
        >>> learner = get_learner("protonet")  # doctest: +SKIP
    """
    key = name.lower()
    registry = {**LEARNERS, **SENTENCE_LEARNERS}
    if key not in registry:
        raise UnknownLearnerError(name, sorted(registry))
    if not isinstance(encoder, Encoder):
        encoder = load_encoder(encoder)
    return registry[key](encoder, **options)


__all__ = [
    "ANIL",
    "FGM",
    "fgm_loss",
    "DESCRIPTIONS",
    "FOMAML",
    "LEARNERS",
    "SENTENCE_LEARNERS",
    "MAML",
    "AdaptedPredictor",
    "CoordinateRule",
    "GradientLearner",
    "LearnedOptimizer",
    "MetaSGD",
    "ProtoMAML",
    "Reinforce",
    "Reptile",
    "OOS_LABEL",
    "SentenceCentroid",
    "SentencePredictor",
    "SentenceProtoMAML",
    "SentenceProtoNet",
    "AbstractTransitions",
    "EpisodeMismatchError",
    "FineTune",
    "Learner",
    "NNShot",
    "NotMetaTrainableError",
    "Predictor",
    "ProtoNet",
    "StructShot",
    "UnknownLearnerError",
    "ViterbiPredictor",
    "WordScorePredictor",
    "ZeroShot",
    "Decomposed",
    "DecomposedPredictor",
    "Transfer",
    "decomposition_scores",
    "class_prototypes",
    "describe",
    "embed_descriptions",
    "estimate_transitions",
    "get_learner",
    "io_index",
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
