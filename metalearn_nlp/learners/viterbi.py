"""Batched Viterbi decoding and StructShot's abstract transitions.

StructShot (Yang and Katiyar, 2020) decodes NNShot's per-word scores with
label transitions that are *not* learned on the few-shot task: they are
counted on the training corpus between **abstract** tags, which do not name
a type, and then spread over the episode's concrete labels.

Abstract tags (IO, as in Few-NERD). Every tag is ``O`` or ``I``; a
transition between two entity tags is either to the *same* type or to an
*other* type. Counting on the training sentences gives

* start: ``p(O | start)``, ``p(I | start)``;
* from ``O``: ``p(O | O)``, ``p(I | O)``;
* from ``I``: ``p(O | I)``, ``p(I-same | I)``, ``p(I-other | I)``,

each row normalised to 1 (Few-NERD ``util/framework.py``,
``get_abstract_transitions``; asappresearch/structshot
``run_pl_pred.py``, same function). For an episode with N types the
concrete transitions are (Few-NERD ``util/viterbi.py``,
``project_target_transitions``)

* ``start -> I_a = p(I | start) / N``, ``O -> I_a = p(I | O) / N``,
* ``I_a -> I_a = p(I-same | I)``, ``I_a -> I_b = p(I-other | I) / (N - 1)`` for ``b != a``,
* ``I_a -> O = p(O | I)``, ``O -> O``, ``start -> O`` unchanged,

so every row still sums to 1. Then a temperature ``tau`` re-normalises each
row, ``p'(j | i) = p(j | i)^tau / sum_k p(k | i)^tau``; probabilities that
are 0 are floored at ``1e-6`` and the decoder works with their logarithms
(the same file; Few-NERD's default ``tau`` is 0.05, StructShot's 0.1).

Generalised here: the same counting works for BIO and BIOES with abstract
tags ``O``, ``B``, ``I`` (``E``, ``S``), a transition key being the target
prefix and, between entity tags, ``same``/``other``. For IO it gives exactly
the seven numbers above. With one way (N = 1) there is no other type and
``I_a -> I_b`` is dropped (Few-NERD divides by N - 1 = 0).

Taught in: chapter 3.2 (StructShot); chapter 4.2 (Viterbi's recursion).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..data.episode import TaggedSentence
from ..data.tags import SCHEMES, convert_tags, parse_tag
from ..kernels import viterbi

__all__ = [
    "AbstractTransitions",
    "estimate_transitions",
    "transition_scores",
    "viterbi_decode",
]

START = "start"


def viterbi_decode(
    emissions: torch.Tensor,
    transitions: torch.Tensor,
    start: torch.Tensor | None = None,
    end: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The highest-scoring tag path of each sequence in a batch.

    A path ``y_1 .. y_T`` scores
    ``start[y_1] + sum_t emissions[t, y_t] + sum_{t>1} transitions[y_{t-1}, y_t] + end[y_T]``.

    Arguments:
        emissions: ``(B, T, C)`` per-position label scores (log-probabilities
            for StructShot); -inf forbids a label.
        transitions: ``(C, C)``, ``transitions[i, j]`` scores ``i -> j``.
        start: ``(C,)`` scores of the first label (default 0).
        end: ``(C,)`` scores of the last label (default 0).
        mask: ``(B, T)`` bool, true on real positions; each row must be a
            prefix of trues (default: all true). A row with no true position
            gets an empty path (score 0, tags 0).

    Returns:
        ``(paths, scores)``: ``(B, T)`` label ids (0 past each sequence's
        end) and ``(B,)`` the best scores. Ties go to the lower label id.

    The whole batch is decoded at once by :func:`metalearn_nlp.kernels.viterbi`
    (a Triton kernel on a GPU where it is faster, the batched PyTorch
    recursion otherwise).

    Example:
        >>> e = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])
        >>> viterbi_decode(e, torch.tensor([[0.0, 0.0], [0.0, -5.0]]))[0]
        tensor([[1, 0]])

    Taught in: chapter 4.2.
    """
    if emissions.dim() != 3:
        raise ValueError(f"emissions must be (B, T, C), got shape {tuple(emissions.shape)}")
    b, t, c = emissions.shape
    if transitions.shape != (c, c):
        raise ValueError(f"transitions must be ({c}, {c}) for {c} labels, got {tuple(transitions.shape)}")
    device = emissions.device
    if mask is None:
        mask = torch.ones(b, t, dtype=torch.bool, device=device)
    mask = mask.to(device).bool()
    lengths = mask.sum(1)
    if t > 0 and not torch.equal(mask, torch.arange(t, device=device)[None, :] < lengths[:, None]):
        raise ValueError("each row of mask must be a run of trues from position 0 (a prefix)")
    # one Triton program per sentence on a GPU (where measured faster), else the batched
    # PyTorch recursion; both break ties towards the lower label id
    return viterbi(emissions, transitions, start, end, lengths)


def _abstract(tag: str, scheme: str) -> tuple[str, str]:
    """(prefix, type) of a tag; IO entity tags have prefix ``I``."""
    return parse_tag(tag, scheme)


@dataclass(frozen=True)
class AbstractTransitions:
    """Transition probabilities between abstract tags, counted on a corpus.

    Attributes:
        scheme: the tag scheme they were counted in.
        start: ``{prefix: p(prefix | start)}``.
        transitions: ``{from_prefix: {(to_prefix, relation): p}}``, where
            relation is ``"same"`` or ``"other"`` between two entity tags and
            ``""`` when either side is ``O``.
        counts: the raw counts, same layout (``"start"`` is a from-key).

    Example:
        >>> t = estimate_transitions([TaggedSentence(["A", "b"], ["B-x", "O"])], "io")
        >>> t.start, t.transitions["I"]
        ({'I': 1.0}, {('O', ''): 1.0})

    Taught in: chapter 3.2 (StructShot).
    """

    scheme: str
    start: dict[str, float]
    transitions: dict[str, dict[tuple[str, str], float]]
    counts: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict, compare=False)

    def prob(self, source: str, target: str, relation: str = "") -> float:
        """``p(target, relation | source)``, 0 when never seen; ``source="start"`` for the first tag."""
        if source == START:
            return self.start.get(target, 0.0)
        return self.transitions.get(source, {}).get((target, relation), 0.0)

    def few_nerd(self) -> tuple[float, float, float, float, float, float, float]:
        """The seven IO numbers in Few-NERD's order ``(s_o, s_i, o_o, o_i, i_o, i_i, x_y)``."""
        if self.scheme != "io":
            raise ValueError(f"Few-NERD's seven abstract transitions are IO; these are {self.scheme}")
        return (
            self.prob(START, "O"), self.prob(START, "I"),
            self.prob("O", "O"), self.prob("O", "I"),
            self.prob("I", "O"), self.prob("I", "I", "same"), self.prob("I", "I", "other"),
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"scheme", "start", "transitions": {from: {"to/relation": p}}}``."""
        return {
            "scheme": self.scheme,
            "start": dict(self.start),
            "transitions": {
                source: {f"{to}/{rel}" if rel else to: p for (to, rel), p in row.items()}
                for source, row in self.transitions.items()
            },
        }


def estimate_transitions(
    sentences: Iterable[TaggedSentence], scheme: str = "io", *, source_scheme: str = "bio"
) -> AbstractTransitions:
    """Count abstract tag transitions on training sentences (StructShot, Few-NERD).

    Arguments:
        sentences: tagged sentences of the *training* corpus (all of its
            types count: transitions are type-agnostic).
        scheme: the scheme of the episodes to decode; the tags are converted
            to it first (so in IO, adjacent same-type entities are one run,
            as an IO episode shows them).
        source_scheme: the scheme the sentences' tags are written in (BIO
            for everything ``load_corpus`` and ``split_types`` give).

    Returns:
        ``AbstractTransitions``; each row sums to 1 over what was seen.

    Raises:
        ValueError: no sentences, or tags that are not valid in ``source_scheme``.

    Example:
        >>> corpus = [TaggedSentence(["Ada", "Lovelace", "wrote"], ["B-per", "I-per", "O"])]
        >>> estimate_transitions(corpus, "io").few_nerd()
        (0.0, 1.0, 0.0, 0.0, 0.5, 0.5, 0.0)

    Taught in: chapter 3.2 (StructShot).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}: expected one of {SCHEMES}")
    counts: dict[str, dict[tuple[str, str], int]] = {}

    def add(source: str, key: tuple[str, str]) -> None:
        row = counts.setdefault(source, {})
        row[key] = row.get(key, 0) + 1

    n = 0
    for i, sentence in enumerate(sentences):
        n += 1
        try:
            tags = sentence.tags if source_scheme == scheme else convert_tags(sentence.tags, source_scheme, scheme)
            parsed = [_abstract(tag, scheme) for tag in tags]
        except ValueError as error:
            raise ValueError(
                f"sentence {i}: {error} (tags are read as {source_scheme!r}; pass source_scheme=)"
            ) from None
        add(START, (parsed[0][0], ""))
        for (p_prefix, p_type), (n_prefix, n_type) in zip(parsed, parsed[1:]):
            relation = "" if "O" in (p_prefix, n_prefix) else ("same" if p_type == n_type else "other")
            add(p_prefix, (n_prefix, relation))
    if n == 0:
        raise ValueError("estimate_transitions needs at least one sentence")

    def normalise(row: dict[tuple[str, str], int]) -> dict[tuple[str, str], float]:
        total = sum(row.values())
        return {key: value / total for key, value in sorted(row.items())}

    start = {prefix: p for (prefix, _), p in normalise(counts[START]).items()}
    transitions = {source: normalise(row) for source, row in sorted(counts.items()) if source != START}
    return AbstractTransitions(scheme, start, transitions, counts)


def transition_scores(
    abstract: AbstractTransitions,
    label_names: Sequence[str],
    *,
    tau: float = 0.05,
    min_prob: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concrete log-transition scores for an episode's labels (Few-NERD's projection).

    Arguments:
        abstract: from ``estimate_transitions``, in the episode's scheme.
        label_names: the episode's ``label_names`` (``O`` first).
        tau (float, default 0.05): temperature; each row becomes
            ``p^tau / sum p^tau``. ``tau < 1`` flattens the rows towards
            uniform, ``tau = 1`` keeps the counted probabilities.
        min_prob (float, default 1e-6): floor for probabilities that are 0.

    Returns:
        ``(start, transitions)``: ``(C,)`` and ``(C, C)`` log-probabilities.

    Example:
        >>> t = estimate_transitions([TaggedSentence(["A", "b"], ["B-x", "O"])], "io")
        >>> start, trans = transition_scores(t, ["O", "x", "y"], tau=1.0)
        >>> start.exp()
        tensor([1.0000e-06, 5.0000e-01, 5.0000e-01])

    Taught in: chapter 3.2 (StructShot).
    """
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    parsed = [_abstract(name, abstract.scheme) for name in label_names]
    if parsed[0][0] != "O":
        raise ValueError(f"label_names must start with 'O', got {list(label_names)[:3]}")
    types = list(dict.fromkeys(type_ for prefix, type_ in parsed if prefix != "O"))
    n = len(types)
    c = len(label_names)

    def row(source: str, source_type: str) -> list[float]:
        values = []
        for prefix, type_ in parsed:
            if prefix == "O":
                values.append(abstract.prob(source, "O"))
            elif source in (START, "O"):
                values.append(abstract.prob(source, prefix) / n)
            elif type_ == source_type:
                values.append(abstract.prob(source, prefix, "same"))
            else:
                values.append(abstract.prob(source, prefix, "other") / (n - 1) if n > 1 else 0.0)
        return values

    # small tables built on the CPU (viterbi_decode moves them to the emissions' device)
    probs = torch.tensor([row(prefix, type_) for prefix, type_ in parsed], dtype=torch.float64, device="cpu")
    start = torch.tensor([row(START, "")], dtype=torch.float64, device="cpu")

    def renormalise(p: torch.Tensor) -> torch.Tensor:
        powered = p.pow(tau)
        sums = powered.sum(1, keepdim=True)
        out = torch.where(sums > 0, powered / sums.clamp_min(1e-300), torch.zeros_like(powered))
        return torch.where(out > 0, out, torch.full_like(out, min_prob)).log().float()

    return renormalise(start).reshape(c), renormalise(probs)
