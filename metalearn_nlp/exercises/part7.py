"""Checks for the exercises of part 7 (tools and resources; GPU kernels).

Each ``check_*`` runs the student's answer on inputs of its own and returns a
:class:`~metalearn_nlp.exercises._core.Feedback`: ``correct()`` or ``not_yet(hint)``,
where the hint points at the mistake without giving the solution away.

Taught in: chapter 7.1 (Tools and resources), chapter 7.2 (GPU kernels for meta-learning).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ._core import Feedback, correct, not_yet
from ._util import call

__all__ = ["check_bib_entry", "check_conll_text", "check_cuda_backend", "check_online_logsumexp"]

#: Fields any one of which names where a reference appeared (the test of ``book/references.bib`` uses the same).
VENUE_FIELDS = ("journal", "booktitle", "publisher", "eprint", "howpublished", "school", "institution")


def _bib_reference(entry: Mapping[str, str]) -> bool:
    fields = {k.lower() for k, v in entry.items() if str(v).strip()}
    return ({"author", "editor"} & fields != set() and {"title", "year"} <= fields
            and bool(set(VENUE_FIELDS) & fields))


def check_bib_entry(is_complete: Callable[[Mapping[str, str]], bool]) -> Feedback:
    """Check ``is_complete(entry) -> bool`` for a BibTeX entry given as a ``{field: value}`` dict.

    Complete means: an author (or, for an edited book, an editor), a title, a year, and a
    venue field (journal, booktitle, publisher, eprint, howpublished, school or institution),
    none of them empty; field names in any case.

    Example:
        >>> check_bib_entry(lambda e: {"author", "title", "year", "journal"} <= set(e)).passed
        False

    Taught in: chapter 7.1.
    """
    full = {"author": "Snell, Jake", "title": "Prototypical Networks", "year": "2017",
            "booktitle": "Advances in Neural Information Processing Systems"}
    cases: list[tuple[dict[str, str], str]] = [
        (full, "a complete @inproceedings entry"),
        ({"author": "Nichol, Alex", "title": "On First-Order Meta-Learning Algorithms", "year": "2018",
          "eprint": "1803.02999"}, "an arXiv preprint with eprint= as its venue"),
        ({"editor": "Thrun, Sebastian", "title": "Learning to Learn", "year": "1998", "publisher": "Kluwer"},
         "an edited book (editor, no author)"),
        ({"Author": "Caruana, Rich", "Title": "Multitask Learning", "Year": "1997", "Journal": "Machine Learning"},
         "field names in capitals"),
        ({k: v for k, v in full.items() if k != "booktitle"}, "an entry without any venue"),
        ({k: v for k, v in full.items() if k != "year"}, "an entry without a year"),
        ({k: v for k, v in full.items() if k != "author"}, "an entry without authors"),
        ({**full, "title": "  "}, "an entry whose title is blank"),
        ({"author": "X", "title": "Y", "year": "2020", "note": "somewhere"}, "an entry whose only 'venue' is a note"),
    ]
    for entry, what in cases:
        got, failed = call(is_complete, dict(entry), what="is_complete(entry)")
        if failed:
            return failed
        if bool(got) != _bib_reference(entry):
            return not_yet(f"for {what} your function says {bool(got)}. Reread which fields count, "
                           "and remember that field names are case-insensitive and values can be empty.")
    return correct("Your rule agrees with tests/test_references.py on every case tried.")


def check_conll_text(conll_text: Callable[[list[tuple[list[str], list[str]]]], str]) -> Feedback:
    """Check ``conll_text(sentences) -> str``: CoNLL text that ``load_corpus`` reads back unchanged.

    ``sentences`` is a list of ``(tokens, tags)`` pairs; the check writes the string to a
    ``train.conll`` file, loads it with :func:`metalearn_nlp.data.load_corpus` and compares.

    Taught in: chapter 7.1.
    """
    from ..data import load_corpus

    sentences = [
        (["Ada", "Lovelace", "visited", "New", "York", "."], ["B-person", "I-person", "O", "B-location", "I-location", "O"]),
        (["no", "entity", "here"], ["O", "O", "O"]),
        (["Grüße", "aus", "Zürich"], ["O", "O", "B-location"]),
        (["Kindle"], ["B-product"]),
    ]
    text, failed = call(conll_text, [(list(t), list(g)) for t, g in sentences], what="conll_text(sentences)")
    if failed:
        return failed
    if not isinstance(text, str):
        return not_yet(f"return the file's text as one string, not a {type(text).__name__}")
    folder = Path(tempfile.mkdtemp(prefix="check-conll-"))
    (folder / "train.conll").write_text(text, encoding="utf-8")
    try:
        corpus = load_corpus(folder / "train.conll")
    except Exception as exc:
        return not_yet(f"load_corpus could not read your text ({type(exc).__name__}: {str(exc)[:200]}). "
                       "One token per line, its tag in the last column.")
    got = [(list(s.tokens), list(s.tags)) for s in corpus.sentences("train")]
    want = [(list(t), list(g)) for t, g in sentences]
    if len(got) != len(want):
        return not_yet(f"the reader found {len(got)} sentences instead of {len(want)}: "
                       "what tells it that one sentence ends and the next begins?")
    for (tokens, tags), (want_tokens, want_tags) in zip(got, want):
        if tokens != want_tokens:
            return not_yet(f"tokens came back as {tokens} instead of {want_tokens}: how are columns separated?")
        if tags != want_tags:
            return not_yet(f"tags came back as {tags} instead of {want_tags}")
    return correct("load_corpus reads your text back unchanged.")


def check_online_logsumexp(online_logsumexp: Callable[[Any, int], Any]) -> Feedback:
    """Check ``online_logsumexp(scores, block) -> Tensor``: row log-sum-exp of an N x C tensor,
    visiting ``block`` columns at a time (the kernel's loop over class tiles).

    Tried on scores in the thousands (where ``exp`` overflows), rows with ``-inf`` entries
    (padded classes), and ``C`` not a multiple of ``block``.

    Taught in: chapter 7.2.
    """
    import torch

    gen = torch.Generator().manual_seed(7)
    base = torch.randn(6, 11, generator=gen, dtype=torch.float64)
    padded = base.clone()
    padded[:, 7:] = float("-inf")
    cases = [(base, 4, "small scores, C=11 in blocks of 4"), (base, 11, "one block"), (base, 1, "blocks of one column"),
             (1000.0 + 50 * base, 4, "scores around 1000"), (-1000.0 + 50 * base, 3, "scores around -1000"),
             (padded, 4, "a whole block of -inf (padded classes)")]
    for scores, block, what in cases:
        got, failed = call(online_logsumexp, scores.clone(), block, what="online_logsumexp(scores, block)")
        if failed:
            return failed
        got = torch.as_tensor(got, dtype=torch.float64).reshape(-1)
        want = torch.logsumexp(scores, dim=1)
        if got.shape != want.shape:
            return not_yet(f"for {what}: expected one value per row ({want.shape[0]}), got shape {tuple(got.shape)}")
        if not torch.isfinite(got).all():
            return not_yet(f"for {what}: your result has inf or NaN. What happens to exp(s) when s is large, "
                           "and to exp(-inf - (-inf))?")
        err = (got - want).abs().max().item()
        if not err <= 1e-9 * max(1.0, want.abs().max().item()):
            return not_yet(f"for {what}: off by {err:.3g}. When the running maximum changes, what must happen "
                           "to the sum accumulated so far?")
    return correct("Matches torch.logsumexp, overflow and padding included.")


def check_cuda_backend(cuda_backend: Callable[[str, Mapping[str, int]], str]) -> Feedback:
    """Check ``cuda_backend(op, sizes) -> "triton" | "torch"``: the rule of
    :func:`metalearn_nlp.kernels.choose` for a CUDA tensor (Triton inside ``CUDA_ENVELOPE``).

    Taught in: chapter 7.2.
    """
    from ..kernels import CUDA_ENVELOPE

    for op, bounds in CUDA_ENVELOPE.items():
        inside = {name: (lo + hi) // 2 for name, (lo, hi) in bounds.items()}
        trials = [(dict(inside), "triton", "sizes in the middle of every range")]
        for name, (lo, hi) in bounds.items():
            trials += [({**inside, name: lo}, "triton", f"{name} at its lower bound {lo}"),
                       ({**inside, name: hi}, "triton", f"{name} at its upper bound {hi}"),
                       ({**inside, name: lo - 1}, "torch", f"{name} just below its range"),
                       ({**inside, name: hi + 1}, "torch", f"{name} just above its range")]
        for sizes, want, what in trials:
            got, failed = call(cuda_backend, op, dict(sizes), what="cuda_backend(op, sizes)")
            if failed:
                return failed
            if got != want:
                return not_yet(f"{op} with {what}: you return {got!r}. Are the bounds inclusive, "
                               "and do you look at every size of the op?")
    return correct("Same rule as choose() on a CUDA tensor.")
