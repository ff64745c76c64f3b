"""The CoNLL reader and writer, on small files each test writes itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metalearn_nlp.data import ConllFormatError, TaggedSentence, read_conll, write_conll


def conll_text(*sentences: list[tuple[str, str]]) -> str:
    return "".join("".join(f"{token}\t{tag}\n" for token, tag in s) + "\n" for s in sentences)


def as_pairs(sentences: list[TaggedSentence]) -> list[list[tuple[str, str]]]:
    return [list(zip(s.tokens, s.tags)) for s in sentences]


# --- the format -----------------------------------------------------------


def test_reads_tab_separated_sentences(write):
    path = write("train.conll", conll_text([("EU", "B-org"), ("rejects", "O")], [("Peter", "B-person"), ("Blackburn", "I-person")]))
    sentences, report = read_conll(path)
    assert as_pairs(sentences) == [[("EU", "B-org"), ("rejects", "O")], [("Peter", "B-person"), ("Blackburn", "I-person")]]
    assert (report.sentences, report.tokens, report.repaired) == (2, 4, 0)
    assert report.columns == {2: 4}


def test_any_whitespace_only_line_ends_a_sentence_and_none_is_dropped(write):
    # empty line, a lone tab (WNUT-16/17), spaces, CRLF, several blank lines, no final newline
    text = "a\tO\n\nb\tO\n\t\nc\tO\n   \r\nd\tO\r\n\r\n\n\ne\tB-x\nf\tI-x"
    sentences, report = read_conll(write("f.txt", text))
    assert [s.tokens for s in sentences] == [("a",), ("b",), ("c",), ("d",), ("e", "f")]
    assert report.whitespace_breaks == 2  # the lone tab and the spaces
    assert report.extra_breaks == 2  # blank lines that ended no sentence
    assert any("CRLF" in note for note in report.notes)


def test_tag_is_the_last_column_and_space_separation_works(write):
    text = "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nGerman  JJ\tB-NP\tB-MISC\n"  # 4 columns, mixed separators
    sentences, report = read_conll(write("eng.train", text))
    assert as_pairs(sentences) == [[("EU", "B-ORG"), ("rejects", "O")], [("German  JJ", "B-MISC")]]
    assert report.columns == {4: 2, 3: 1}
    assert "mixed column counts" in str(report)


def test_tab_separated_tokens_may_contain_spaces(write):
    sentences, _ = read_conll(write("f.txt", "New York\tB-loc\n"))
    assert sentences[0].tokens == ("New York",)


def test_docstart_lines_are_document_markers_not_tokens(write):
    text = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\n-DOCSTART-\nPeter NNP B-NP B-PER\n"
    sentences, report = read_conll(write("f.txt", text))
    assert [s.tokens for s in sentences] == [("EU",), ("Peter",)]
    assert report.documents == 2
    assert "2 -DOCSTART- lines skipped" in str(report)


def test_html_entity_pieces_urls_emoji_and_handles_are_read_as_tokens(write):
    tokens = ["@paulwalk", "&", "gt", ";", "😂", "http://bit.ly/x", "´", "line\u2028separator"]
    sentences, _ = read_conll(write("tweets.conll", conll_text([(t, "O") for t in tokens])))
    assert list(sentences[0].tokens) == tokens


def test_byte_order_mark_is_removed_and_noted(write):
    sentences, report = read_conll(write("f.txt", b"\xef\xbb\xbfEU\tB-org\n"))
    assert sentences[0].tokens == ("EU",)
    assert any("byte-order mark" in note for note in report.notes)


def test_empty_file_gives_no_sentences_and_says_so(write):
    sentences, report = read_conll(write("f.txt", "\n\t\n"))
    assert sentences == []
    assert any("no sentences" in note for note in report.notes)


# --- BIO repair -------------------------------------------------------------


def test_orphan_i_tags_are_repaired_and_counted_with_file_and_line(write):
    text = "a\tI-person\nb\tI-person\nc\tO\nd\tI-org\ne\tB-person\nf\tI-org\n"
    path = write("train.conll", text)
    sentences, report = read_conll(path)
    assert sentences[0].tags == ("B-person", "I-person", "O", "B-org", "B-person", "B-org")
    assert report.repaired == 3
    assert report.repair_examples[0] == f"{path}:1: I-person -> B-person (after the start of the sentence)"
    assert report.repair_examples[1] == f"{path}:4: I-org -> B-org (after 'O')"
    assert "3 I- tags repaired to B-" in str(report)


def test_strict_mode_raises_on_the_first_orphan_i_tag(write):
    path = write("train.conll", "a\tB-person\nb\tI-person\nc\tO\nd\tI-org\n")
    with pytest.raises(ConllFormatError) as caught:
        read_conll(path, strict=True)
    assert caught.value.line == 4
    assert str(caught.value).startswith(f"{path}:4: expected 'B-org'")
    assert "strict=False" in str(caught.value)


def test_i_tag_after_a_sentence_break_is_an_orphan(write):
    sentences, report = read_conll(write("f.txt", "a\tB-x\n\nb\tI-x\n"))
    assert sentences[1].tags == ("B-x",) and report.repaired == 1


# --- malformed input --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("a\tO\nlonely\nb\tO\n", 2, "expected 'TOKEN<TAB>TAG' (the tag in the last column), got one column: 'lonely'"),
        ("a\tO\nb\t\n", 2, "got one column"),
        ("a\tO\n\n\tB-x\n", 3, "expected a token in the first column, got an empty one"),
        ("a\tO\nb\tX-PER\n", 2, "expected a BIO tag ('O', 'B-TYPE' or 'I-TYPE'), got 'X-PER'"),
        ("a\tperson-actor\n", 1, "read it with scheme='io'"),
        ("a\tO\nb\tS-x\n", 2, "got 'S-x'"),
    ],
)
def test_malformed_lines_name_file_line_and_expectation(write, text: str, line: int, message: str):
    path = write("train.conll", text)
    with pytest.raises(ConllFormatError) as caught:
        read_conll(path)
    error = caught.value
    assert isinstance(error, ValueError)
    assert (error.path, error.line) == (str(path), line)
    assert str(error).startswith(f"{path}:{line}: ")
    assert message in str(error)


@pytest.mark.parametrize("space", ["\u00a0", "\u2009", "\u3000", "\u2028", "\x1c", "\x85"])
def test_a_unicode_space_in_a_space_separated_line_is_an_error_not_a_cut_token(write, space: str):
    # split on spaces, "New<NBSP>York B-loc" used to be read as the token "New" (and "York" lost)
    path = write("train.conll", f"Ada B-person\n\nNew{space}York B-loc\n")
    with pytest.raises(ConllFormatError) as caught:
        read_conll(path)
    error = caught.value
    assert (error.path, error.line) == (str(path), 3)
    assert f"U+{ord(space):04X}" in str(error)
    assert "separate the columns with tabs" in str(error)


def test_unicode_spaces_inside_tab_separated_tokens_are_kept(write):
    sentences, _ = read_conll(write("f.txt", "New\u00a0York\tB-loc\n"))
    assert sentences[0].tokens == ("New\u00a0York",)


def test_bad_encoding_names_the_line_and_the_byte(write):
    path = write("latin1.conll", "caf\xe9\tO\n".encode("utf-8") + b"na\xefve\tO\n")
    with pytest.raises(ConllFormatError, match=r"latin1\.conll:2: expected UTF-8 text, got byte 0xef at column 3") as caught:
        read_conll(path)
    assert caught.value.line == 2 and "iconv" in str(caught.value)


def test_unsupported_scheme_is_rejected(write):
    with pytest.raises(ValueError, match="BIO or IO files"):
        read_conll(write("f.txt", "a\tS-x\n"), scheme="bioes")


# --- IO files (Few-NERD) ----------------------------------------------------


def test_io_files_read_bare_types_and_drop_i_prefixes(write):
    text = "London\tlocation-GPE\nis\tO\nbig\tI-other-misc\n"
    sentences, report = read_conll(write("train.txt", text), scheme="io")
    assert sentences[0].tags == ("location-GPE", "O", "other-misc")
    assert report.repaired == 0


def test_io_files_reject_b_tags(write):
    with pytest.raises(ConllFormatError, match=r"f\.txt:1: .*IO has no B- prefix"):
        read_conll(write("f.txt", "a\tB-x\n"), scheme="io")


# --- writer -----------------------------------------------------------------


def test_write_then_read_gives_the_sentences_back(tmp_path: Path):
    sentences = [
        TaggedSentence(["Ada", "Lovelace", "😂"], ["B-person", "I-person", "O"]),
        TaggedSentence(["New York"], ["B-geo-loc"]),
    ]
    path = tmp_path / "out.conll"
    write_conll(path, sentences)
    assert path.read_text(encoding="utf-8") == "Ada\tB-person\nLovelace\tI-person\n😂\tO\n\nNew York\tB-geo-loc\n\n"
    assert read_conll(path)[0] == sentences


@pytest.mark.parametrize("token", ["", " padded", "tab\tinside", "line\nbreak"])
def test_writer_refuses_tokens_the_format_cannot_hold(tmp_path: Path, token: str):
    bad = TaggedSentence(["ok", token], ["O", "O"])
    with pytest.raises(ValueError, match=r"sentence 0, token 1: token .* cannot be written"):
        write_conll(tmp_path / "out.conll", [bad])


TOKEN = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\t\n\r\ufeff"), min_size=1, max_size=8
).filter(lambda t: t == t.strip() and t != "-DOCSTART-")
TAG = st.one_of(st.just("O"), st.builds("B-{}".format, st.sampled_from(["person", "geo-loc"])))


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.tuples(TOKEN, TAG), min_size=1, max_size=6), max_size=5))
def test_write_read_round_trip(tmp_path: Path, pairs: list[list[tuple[str, str]]]):
    sentences = [TaggedSentence([t for t, _ in s], [g for _, g in s]) for s in pairs]
    path = tmp_path / "round.conll"
    write_conll(path, sentences)
    read, report = read_conll(path, strict=True)
    assert read == sentences
    assert report.sentences == len(sentences)
