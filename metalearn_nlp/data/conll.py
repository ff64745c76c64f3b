"""A strict reader and writer for CoNLL-style NER files.

Format: one token per line, ``TOKEN<TAB>TAG`` (or space separated), the
token in the first column and the tag in the **last** one, so files with
extra columns (CoNLL-2003's ``TOKEN POS CHUNK TAG``) read as they are. If a
line holds a tab, columns are split on tabs (a token may then contain
spaces); otherwise on runs of spaces, and a line without a tab that holds a
non-ASCII space (a no-break space, U+2028, ...) is an error, since splitting
there would cut a token in two. Any whitespace-only line (empty,
spaces, a lone tab) ends a sentence. ``-DOCSTART-`` lines are document
markers: they end a sentence and are counted, not read as tokens. Files are
UTF-8.

Nothing is dropped silently: every problem either raises a
``ConllFormatError`` naming ``file:line``, what was expected and what
to do, or is repaired and counted in the ``ReadReport``.

Taught in: chapter 5.1 Preparing the data.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .episode import TaggedSentence
from .tags import parse_tag, repaired_prefix

__all__ = ["ConllFormatError", "ReadReport", "read_conll", "write_conll"]

_DOCSTART = "-DOCSTART-"
_MAX_EXAMPLES = 5


class ConllFormatError(ValueError):
    """A CoNLL file breaks the format; the message starts with ``file:line:``.

    Attributes:
        path: the file, as given to the reader.
        line: 1-based line number.
        reason: the message without the location.
    """

    def __init__(self, path: str | Path, line: int, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        super().__init__(f"{self.path}:{line}: {reason}")


@dataclass
class ReadReport:
    """What ``read_conll`` read, repaired and skipped.

    Attributes:
        path: the file.
        scheme: the tag scheme it was read in.
        sentences, tokens: how many were read.
        repaired: BIO ``I-`` tags that did not continue an entity, rewritten as ``B-``.
        repair_examples: up to five of them, as ``file:line: I-X -> B-X (after ...)``.
        documents: ``-DOCSTART-`` lines skipped.
        whitespace_breaks: sentence breaks written as whitespace-only but
            non-empty lines (e.g. a lone tab).
        extra_breaks: break lines that end no sentence (several in a row,
            e.g. where documents meet); they hold no tokens, so nothing is lost.
        columns: how many token lines had each column count.
        notes: anything else worth knowing (byte-order mark, CRLF line ends, an empty file).

    Example:
        >>> print(report)  # doctest: +SKIP
        train.txt: 14,985 sentences, 203,621 tokens, 2 columns per line, no I- tags repaired
    """

    path: str
    scheme: str
    sentences: int = 0
    tokens: int = 0
    repaired: int = 0
    repair_examples: list[str] = field(default_factory=list)
    documents: int = 0
    whitespace_breaks: int = 0
    extra_breaks: int = 0
    columns: dict[int, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        parts = [f"{self.sentences:,} sentences", f"{self.tokens:,} tokens"]
        if len(self.columns) == 1:
            parts.append(f"{next(iter(self.columns))} columns per line")
        elif self.columns:
            counts = ", ".join(f"{n} in {c:,} lines" for n, c in sorted(self.columns.items()))
            parts.append(f"mixed column counts ({counts})")
        if self.scheme == "bio":
            parts.append(f"{self.repaired:,} I- tags repaired to B-" if self.repaired else "no I- tags repaired")
        if self.documents:
            parts.append(f"{self.documents:,} -DOCSTART- lines skipped")
        if self.whitespace_breaks:
            parts.append(f"{self.whitespace_breaks:,} sentence breaks on whitespace-only lines")
        if self.extra_breaks:
            parts.append(f"{self.extra_breaks:,} extra blank lines (several in a row) ending no sentence")
        lines = [f"{self.path}: " + ", ".join(parts)]
        lines += [f"  e.g. {example}" for example in self.repair_examples]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise ConllFormatError(
            path,
            line,
            f"expected UTF-8 text, got byte 0x{data[error.start]:02x} at column {column} ({error.reason}); "
            "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in > out`)",
        ) from None


# The spaces that may separate columns; str.split() would also split on Unicode spaces and separators.
_ASCII_SPACES = " \t\n\r\f\v"


def _check_space_separated(path: Path, number: int, line: str, content: str) -> None:
    """Refuse a space-separated line that holds a non-ASCII space: splitting there would cut a token."""
    for column, char in enumerate(content, start=len(line) - len(line.lstrip()) + 1):
        if char.isspace() and char not in _ASCII_SPACES:
            name = unicodedata.name(char, "a control character")
            raise ConllFormatError(
                path,
                number,
                f"expected columns separated by spaces, got {name} (U+{ord(char):04X}) at column {column} of "
                f"{line!r}: a line without a tab is split at every space, which would cut its token there; "
                "separate the columns with tabs (a token may then contain spaces), or replace the character",
            )


def read_conll(
    path: str | Path, *, scheme: str = "bio", strict: bool = False
) -> tuple[list[TaggedSentence], ReadReport]:
    """Read a CoNLL file into tagged sentences.

    Arguments:
        path: the file.
        scheme: the file's tag scheme: ``"bio"`` (default) or ``"io"``
            (Few-NERD's files: bare type names; an ``I-`` prefix is accepted
            and dropped, so IO tags come back bare).
        strict: raise on a BIO ``I-`` tag that does not continue an entity
            instead of repairing it to ``B-`` (the default repairs and counts
            it in the report).

    Returns:
        ``(sentences, report)``; tags are in ``scheme``.

    Raises:
        ConllFormatError: bad UTF-8, a line with one column, an empty token,
            a space-separated line with a non-ASCII space (a token would be
            cut), a tag that is not valid in ``scheme``, or (strict) an ``I-``
            that does not continue an entity. The message names ``file:line``.
        ValueError: ``scheme`` is not ``"bio"`` or ``"io"``.

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "train.conll"
        >>> _ = path.write_text("EU\\tB-org\\nrejects\\tO\\n\\nPeter\\tI-person\\n", encoding="utf-8")
        >>> sentences, report = read_conll(path)
        >>> sentences[1].tags, report.repaired
        (('B-person',), 1)
        >>> report.repair_examples[0].split(":")[-2:]
        ['4', ' I-person -> B-person (after the start of the sentence)']

    Taught in: chapter 5.1 Preparing the data.
    """
    if scheme not in ("bio", "io"):
        raise ValueError(
            f"read_conll reads BIO or IO files, got scheme={scheme!r}; "
            "read BIOES files as BIO after converting them, or use convert_tags"
        )
    path = Path(path)
    text = _decode(path, path.read_bytes())
    report = ReadReport(path=str(path), scheme=scheme)
    if text.startswith("\ufeff"):
        text = text[1:]
        report.notes.append("a UTF-8 byte-order mark at the start was removed")
    if "\r\n" in text:
        report.notes.append("Windows (CRLF) line endings")

    sentences: list[TaggedSentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    previous = ("O", "")  # (prefix, type) of the previous token in the sentence

    def end_sentence() -> None:
        nonlocal tokens, tags, previous
        if tokens:
            sentences.append(TaggedSentence(tokens, tags))
            tokens, tags = [], []
        previous = ("O", "")

    # split("\n") rather than splitlines(): tweets contain characters such as
    # U+2028 that splitlines() would treat as line breaks.
    lines = text.split("\n")
    if lines[-1] == "":  # the text after the final newline is not a line
        lines.pop()
    for number, line in enumerate(lines, start=1):
        content = line.strip()
        if not content:
            if line and line != "\r":
                report.whitespace_breaks += 1
            if not tokens:
                report.extra_breaks += 1
            end_sentence()
            continue
        trimmed = line.rstrip()
        if "\t" in trimmed:
            columns = trimmed.split("\t")
        else:
            _check_space_separated(path, number, line, content)
            columns = content.split()
        token, tag = columns[0].strip(), columns[-1].strip()
        if token == _DOCSTART:
            report.documents += 1
            end_sentence()
            continue
        if len(columns) < 2:
            raise ConllFormatError(
                path,
                number,
                f"expected 'TOKEN<TAB>TAG' (the tag in the last column), got one column: {line!r}; "
                "add the tag, or make the line empty if it should end a sentence",
            )
        if not token:
            raise ConllFormatError(
                path,
                number,
                f"expected a token in the first column, got an empty one: {line!r}; "
                "fill in the token or delete the line",
            )
        try:
            prefix, type_ = parse_tag(tag, scheme)
        except ValueError as error:
            hint = "; if the file uses bare type names (Few-NERD), read it with scheme='io'" if scheme == "bio" else ""
            raise ConllFormatError(path, number, f"{error} in the last column of {line!r}{hint}") from None
        if scheme == "io":
            tag = type_ if prefix == "I" else "O"
        elif repaired_prefix(prefix, type_, previous) != prefix:
            after = "the start of the sentence" if not tokens else repr(tags[-1])
            if strict:
                raise ConllFormatError(
                    path,
                    number,
                    f"expected 'B-{type_}', got {tag!r} after {after}, which does not continue an entity; "
                    "fix the tag, or read with strict=False to repair such tags to B- and count them in the report",
                )
            report.repaired += 1
            if len(report.repair_examples) < _MAX_EXAMPLES:
                report.repair_examples.append(f"{path}:{number}: {tag} -> B-{type_} (after {after})")
            tag, prefix = f"B-{type_}", "B"
        report.columns[len(columns)] = report.columns.get(len(columns), 0) + 1
        tokens.append(token)
        tags.append(tag)
        previous = (prefix, type_)
    end_sentence()

    report.sentences = len(sentences)
    report.tokens = sum(len(sentence.tokens) for sentence in sentences)
    if not sentences:
        report.notes.append("no sentences: the file is empty or holds only blank lines")
    return sentences, report


def write_conll(path: str | Path, sentences: Iterable[TaggedSentence]) -> None:
    """Write sentences as ``TOKEN<TAB>TAG`` lines, an empty line after each sentence.

    UTF-8 with ``\\n`` line ends, so ``read_conll`` gives the sentences
    back unchanged.

    Arguments:
        path: the file to write.
        sentences: the sentences (tags in any scheme).

    Raises:
        ValueError: a token or tag that the format cannot hold (empty, with
            surrounding whitespace, or containing a tab or line break); the
            message names the sentence and token.

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "out.conll"
        >>> write_conll(path, [TaggedSentence(["New York"], ["B-loc"])])
        >>> path.read_text(encoding="utf-8")
        'New York\\tB-loc\\n\\n'

    Taught in: chapter 5.1 Preparing the data.
    """
    lines: list[str] = []
    for i, sentence in enumerate(sentences):
        for j, (token, tag) in enumerate(zip(sentence.tokens, sentence.tags)):
            for kind, value in (("token", token), ("tag", tag)):
                if not value or value != value.strip() or any(c in value for c in "\t\n\r"):
                    raise ValueError(
                        f"sentence {i}, token {j}: {kind} {value!r} cannot be written to a CoNLL file "
                        "(empty, surrounding whitespace, or a tab or line break inside)"
                    )
            lines.append(f"{token}\t{tag}\n")
        lines.append("\n")
    Path(path).write_bytes("".join(lines).encode("utf-8"))
