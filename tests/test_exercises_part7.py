"""The checks of part 7's exercises accept the reference solutions and reject typical mistakes."""

from __future__ import annotations

import math

import torch

from metalearn_nlp.exercises.part7 import (
    check_bib_entry,
    check_conll_text,
    check_cuda_backend,
    check_online_logsumexp,
)
from metalearn_nlp.kernels import CUDA_ENVELOPE

# --- chapter 7.1 ---------------------------------------------------------------------------

VENUES = ("journal", "booktitle", "publisher", "eprint", "howpublished", "school", "institution")


def bib_ok(entry):
    fields = {k.lower() for k, v in entry.items() if str(v).strip()}
    return bool({"author", "editor"} & fields) and {"title", "year"} <= fields and bool(set(VENUES) & fields)


def test_bib_entry_accepts_the_reference():
    assert check_bib_entry(bib_ok).passed


def test_bib_entry_rejects_typical_mistakes():
    def journal_only(entry):  # forgets booktitle, eprint, ...
        fields = {k.lower() for k in entry}
        return {"author", "title", "year", "journal"} <= fields

    def case_sensitive(entry):
        return bool({"author", "editor"} & set(entry)) and {"title", "year"} <= set(entry) and bool(set(VENUES) & set(entry))

    def ignores_blanks(entry):
        fields = {k.lower() for k in entry}
        return bool({"author", "editor"} & fields) and {"title", "year"} <= fields and bool(set(VENUES) & fields)

    def needs_author(entry):
        fields = {k.lower() for k, v in entry.items() if str(v).strip()}
        return {"author", "title", "year"} <= fields and bool(set(VENUES) & fields)

    def crashes(entry):
        return entry["author"] != ""

    for wrong in (journal_only, case_sensitive, ignores_blanks, needs_author, crashes, lambda e: True):
        feedback = check_bib_entry(wrong)
        assert not feedback.passed, wrong
        assert "booktitle" not in feedback.message  # the hint does not list the venue fields


def conll_ok(sentences):
    return "".join("".join(f"{t}\t{g}\n" for t, g in zip(tokens, tags)) + "\n" for tokens, tags in sentences)


def test_conll_text_accepts_the_reference():
    assert check_conll_text(conll_ok).passed


def test_conll_text_rejects_typical_mistakes():
    def no_blank_lines(sentences):
        return "".join(f"{t}\t{g}\n" for tokens, tags in sentences for t, g in zip(tokens, tags))

    def tag_first(sentences):
        return "".join("".join(f"{g}\t{t}\n" for t, g in zip(tokens, tags)) + "\n" for tokens, tags in sentences)

    def returns_lines(sentences):
        return conll_ok(sentences).splitlines()

    def drops_last_sentence(sentences):
        return conll_ok(sentences[:-1])

    for wrong in (no_blank_lines, tag_first, returns_lines, drops_last_sentence, "not a function"):
        assert not check_conll_text(wrong).passed, wrong


# --- chapter 7.2 ---------------------------------------------------------------------------

def online_ok(scores, block):
    m = torch.full(scores.shape[:1], -math.inf, dtype=scores.dtype)
    total = torch.zeros(scores.shape[:1], dtype=scores.dtype)
    for c0 in range(0, scores.shape[1], block):
        s = scores[:, c0:c0 + block]
        m_new = torch.maximum(m, s.max(1).values)
        safe = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)
        total = total * torch.exp(m - safe) + torch.exp(s - safe[:, None]).sum(1)
        m = m_new
    return m + torch.log(total)


def test_online_logsumexp_accepts_the_reference_and_torch():
    assert check_online_logsumexp(online_ok).passed
    assert check_online_logsumexp(lambda s, b: torch.logsumexp(s, 1)).passed


def test_online_logsumexp_rejects_typical_mistakes():
    def naive(scores, block):  # overflows at 1000
        return torch.log(torch.exp(scores).sum(1))

    def no_rescale(scores, block):  # forgets to rescale the running sum when the maximum grows
        m = torch.full(scores.shape[:1], -math.inf, dtype=scores.dtype)
        total = torch.zeros(scores.shape[:1], dtype=scores.dtype)
        for c0 in range(0, scores.shape[1], block):
            s = scores[:, c0:c0 + block]
            m = torch.maximum(m, s.max(1).values)
            total = total + torch.exp(s - m[:, None]).sum(1)
        return m + torch.log(total)

    def drops_tail(scores, block):  # only whole blocks
        c = scores.shape[1] // block * block
        return torch.logsumexp(scores[:, :c], 1)

    def max_only(scores, block):
        return scores.max(1).values

    for wrong in (naive, no_rescale, drops_tail, max_only):
        assert not check_online_logsumexp(wrong).passed, wrong.__name__


def cuda_ok(op, sizes):
    return "triton" if all(lo <= sizes[k] <= hi for k, (lo, hi) in CUDA_ENVELOPE[op].items()) else "torch"


def test_cuda_backend_accepts_the_reference():
    assert check_cuda_backend(cuda_ok).passed


def test_cuda_backend_rejects_typical_mistakes():
    def exclusive(op, sizes):
        return "triton" if all(lo < sizes[k] < hi for k, (lo, hi) in CUDA_ENVELOPE[op].items()) else "torch"

    def first_size_only(op, sizes):
        name, (lo, hi) = next(iter(CUDA_ENVELOPE[op].items()))
        return "triton" if lo <= sizes[name] <= hi else "torch"

    def always_triton(op, sizes):
        return "triton"

    for wrong in (exclusive, first_size_only, always_triton):
        feedback = check_cuda_backend(wrong)
        assert not feedback.passed, wrong.__name__

