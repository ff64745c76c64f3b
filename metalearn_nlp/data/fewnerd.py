"""Read Few-NERD's official fixed episode files, the test sets of published few-shot NER tables.

Few-NERD (Ding et al., 2021) ships its episodes as
``episode-data/{intra,inter}/{train,dev,test}_{N}_{K}.jsonl``: one JSON
object per line, one episode per object::

    {"support": {"word": [["tok", ...], ...], "label": [["O", "person-actor", ...], ...]},
     "query":   {"word": [...], "label": [...]},
     "types":   ["person-actor", ...]}

Labels are IO tags: ``O`` or a bare type name (Few-NERD's fine types such as
``person-actor``). :func:`load_fewnerd_episodes` turns each line into an
:class:`~metalearn_nlp.data.Episode` in the ``"io"`` scheme, keeping the
file's type order, so every learner and :func:`~metalearn_nlp.evaluation.evaluate`
run on it unchanged. Few-NERD itself is not bundled (it is not installable
offline); the reader is tested on small files the tests write.

Taught in: chapter 5.5 (comparable with the papers).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .episode import Episode, TaggedSentence
from .files import EpisodeFileError

__all__ = ["fewnerd_episode", "is_fewnerd_file", "load_episode_file", "load_fewnerd_episodes"]


def _sentences(part: Any, name: str) -> list[TaggedSentence]:
    if not isinstance(part, dict) or not {"word", "label"} <= part.keys():
        raise ValueError(f"{name!r} must be an object with 'word' and 'label' lists")
    words, labels = part["word"], part["label"]
    if not isinstance(words, list) or not isinstance(labels, list) or len(words) != len(labels):
        raise ValueError(f"{name}: 'word' and 'label' must be lists of the same length (one per sentence), got "
                         f"{len(words) if isinstance(words, list) else type(words).__name__} and "
                         f"{len(labels) if isinstance(labels, list) else type(labels).__name__}")
    out = []
    for i, (tokens, tags) in enumerate(zip(words, labels)):
        if not isinstance(tokens, list) or not isinstance(tags, list) or not all(
                isinstance(x, str) for x in [*tokens, *tags]):
            raise ValueError(f"{name} sentence {i}: 'word' and 'label' entries must be lists of strings")
        try:
            out.append(TaggedSentence(tokens, tags))
        except ValueError as error:
            raise ValueError(f"{name} sentence {i}: {error}") from None
    return out


def fewnerd_episode(data: Any) -> Episode:
    """One Few-NERD episode object (a parsed line) as an IO ``Episode``.

    Arguments:
        data: ``{"support": {"word", "label"}, "query": {"word", "label"}, "types": [...]}``.

    Raises:
        ValueError: a missing key, ``word``/``label`` lists of different
            lengths, or a label that is neither ``O`` nor one of ``types``.

    Example:
        >>> ep = fewnerd_episode({"support": {"word": [["Ada"]], "label": [["person"]]},
        ...                       "query": {"word": [["Bob"]], "label": [["O"]]}, "types": ["person"]})
        >>> ep.label_names
        ['O', 'person']

    Taught in: chapter 5.5.
    """
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    missing = {"support", "query", "types"} - data.keys()
    if missing:
        raise ValueError(f"missing key(s) {sorted(missing)}; a Few-NERD episode has 'support', 'query' and 'types'")
    types = data["types"]
    if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
        raise ValueError(f"'types' must be a non-empty list of type names, got {types!r}")
    support, query = _sentences(data["support"], "support"), _sentences(data["query"], "query")
    return Episode(support, query, types, "io")


def load_fewnerd_episodes(path: str | Path) -> tuple[list[Episode], dict[str, Any]]:
    """Read a Few-NERD episode file (``test_5_1.jsonl`` ...) into IO episodes.

    Arguments:
        path: the ``.jsonl`` file.

    Returns:
        ``(episodes, settings)`` like :func:`~metalearn_nlp.data.load_episodes`;
        ``settings`` records ``{"format": "fewnerd", "file": name, "ways": N,
        "shots": K, "episodes": count}``, with N and K read from a
        ``*_{N}_{K}.jsonl`` name (None when the name has another form).

    Raises:
        FileNotFoundError: no such file.
        EpisodeFileError: an empty file, or a line that is not valid JSON or
            not a valid episode; the message names the file and the line number.

    Example:
        >>> episodes, settings = load_fewnerd_episodes("episode-data/inter/test_5_1.jsonl")  # doctest: +SKIP
        >>> report = evaluate(learner, episodes)  # doctest: +SKIP

    Taught in: chapter 5.5.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such Few-NERD episode file (episode-data/{{intra,inter}}/test_N_K.jsonl)")
    episodes = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError as error:
                raise EpisodeFileError(path, f"line {number}: not valid JSON ({error})") from None
            try:
                episodes.append(fewnerd_episode(data))
            except ValueError as error:
                raise EpisodeFileError(path, f"line {number}: {error}") from None
    if not episodes:
        raise EpisodeFileError(path, "no episodes: the file is empty")
    parts = path.stem.split("_")
    ways = shots = None
    if len(parts) >= 3 and parts[-1].isdigit() and parts[-2].isdigit():
        ways, shots = int(parts[-2]), int(parts[-1])
    return episodes, {"format": "fewnerd", "file": path.name, "ways": ways, "shots": shots,
                      "episodes": len(episodes)}


def is_fewnerd_file(path: str | Path) -> bool:
    """Whether a ``.jsonl`` file looks like a Few-NERD episode file (its first line has ``support``/``query``/``types``),
    as opposed to one written by ``save_episodes`` (whose first line is a header with ``format``).

    Example:
        >>> is_fewnerd_file("test_5_1.jsonl")  # doctest: +SKIP
        True
    """
    with Path(path).open(encoding="utf-8") as handle:
        first = handle.readline()
    try:
        data = json.loads(first)
    except ValueError:
        return False
    return isinstance(data, dict) and {"support", "query", "types"} <= data.keys()


def load_episode_file(path: str | Path) -> tuple[list[Episode], dict[str, Any]]:
    """Read either kind of episode file: the package's own (``save_episodes``) or Few-NERD's.

    Dispatches on the first line (:func:`is_fewnerd_file`): a Few-NERD episode object goes to
    :func:`load_fewnerd_episodes`, anything else to :func:`~metalearn_nlp.data.load_episodes`
    (which verifies the header and the sha256). For the command line and the benchmark.

    Raises:
        FileNotFoundError: no such file.
        EpisodeFileError: as the chosen reader raises.

    Example:
        >>> episodes, settings = load_episode_file("episode-data/inter/test_5_1.jsonl")  # doctest: +SKIP

    Taught in: chapter 5.5.
    """
    from .files import load_episodes

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such episode file")
    return load_fewnerd_episodes(path) if is_fewnerd_file(path) else load_episodes(path)
