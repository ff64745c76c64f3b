"""The small data sets of part 6 (applications), and the simulated users of 6.3.

Two JSON-lines files ship with the package, both written by the book's
authors for the book (no real company, headline or user is in them):

* ``finance_headlines.jsonl``: 216 invented headlines about 12 fictional
  companies in 12 sectors, 18 per company (6 ``positive``, 6 ``negative``,
  6 ``neutral``); one object per line with ``company``, ``sector``,
  ``text`` and ``label``.
* ``recommendation_items.jsonl``: 120 short article descriptions, 20 on
  each of six topics; one object per line with ``item`` (a unique id),
  ``topic`` and ``text``.

Users for chapter 6.3 are **simulated** by :func:`simulate_users` with
stated rules (each likes one or two topics, with noise); they show whether a
method can recover a preference that is a function of the text's topic, and
nothing about real users.

Every reader error names the file and the line, what was wrong and what to
do: ``finance_headlines.jsonl:17: missing field 'label'``.

Taught in: chapter 6.2 (Financial sentiment monitoring); chapter 6.3
(Personalised recommendation).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "FINANCE_LABELS",
    "DataFileError",
    "Headline",
    "Item",
    "SimulatedUser",
    "load_finance_headlines",
    "load_recommendation_items",
    "simulate_users",
]

#: The three sentiment classes of the finance headlines, in a fixed order.
FINANCE_LABELS = ("negative", "neutral", "positive")
_HERE = Path(__file__).resolve().parent
FINANCE_FILE = _HERE / "finance_headlines.jsonl"
ITEMS_FILE = _HERE / "recommendation_items.jsonl"


class DataFileError(ValueError):
    """A data file is missing or malformed; the message names the file and the line."""


@dataclass(frozen=True)
class Headline:
    """One labelled headline about one (fictional) company."""

    company: str
    sector: str
    text: str
    label: str


@dataclass(frozen=True)
class Item:
    """One recommendable item: an id, its topic and its description."""

    item: str
    topic: str
    text: str


@dataclass(frozen=True)
class SimulatedUser:
    """A simulated user: the topics they like and their like/dislike of every item.

    ``likes[i]`` is the user's rating of ``items[i]`` (True = liked), for the
    item list the user was simulated on.
    """

    user: str
    liked_topics: tuple[str, ...]
    likes: tuple[bool, ...]


def _read_jsonl(path: str | os.PathLike[str], fields: Sequence[str]) -> list[dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: no such file; pass the path of a JSON-lines file, or None for the "
                            "file shipped with the package")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row: Any = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataFileError(f"{where}: not valid JSON ({error.msg}); each line must be one JSON object"
                                    ) from None
            if not isinstance(row, dict):
                raise DataFileError(f"{where}: expected a JSON object with fields {list(fields)}, "
                                    f"got {type(row).__name__}")
            for field in fields:
                if field not in row:
                    raise DataFileError(f"{where}: missing field {field!r}; every line needs {list(fields)}")
                if not isinstance(row[field], str) or not row[field].strip():
                    raise DataFileError(f"{where}: field {field!r} must be a non-empty string, "
                                        f"got {row[field]!r}")
            rows.append({**row, "_line": number})  # for the callers' messages
    if not rows:
        raise DataFileError(f"{path}: the file has no records")
    return rows


def load_finance_headlines(path: str | os.PathLike[str] | None = None) -> list[Headline]:
    """Read the finance headlines (chapter 6.2's data).

    Arguments:
        path (str | Path | None, default None): a JSON-lines file with
            fields ``company``, ``sector``, ``text``, ``label``; None for
            the file shipped with the package.

    Returns:
        The headlines, in file order.

    Raises:
        DataFileError: the file is missing or empty, a line is not a JSON
            object, a field is missing or empty, a label is not one of
            ``FINANCE_LABELS``, or a text appears twice; the message names
            the file and the line.

    Example:
        >>> headlines = load_finance_headlines()
        >>> len(headlines), len({h.company for h in headlines})
        (216, 12)

    Taught in: chapter 6.2.
    """
    path = FINANCE_FILE if path is None else Path(path)
    rows = _read_jsonl(path, ("company", "sector", "text", "label"))
    headlines, seen = [], {}
    for row in rows:
        number = row["_line"]
        if row["label"] not in FINANCE_LABELS:
            raise DataFileError(f"{path}:{number} ({row['text'][:40]!r}): label {row['label']!r} "
                                f"is not one of {list(FINANCE_LABELS)}")
        if row["text"] in seen:
            raise DataFileError(f"{path}:{number} repeats the text of line {seen[row['text']]}: "
                                f"{row['text']!r}; a duplicate could land in both support and query; remove one")
        seen[row["text"]] = number
        headlines.append(Headline(row["company"], row["sector"], row["text"], row["label"]))
    return headlines


def load_recommendation_items(path: str | os.PathLike[str] | None = None) -> list[Item]:
    """Read the recommendable items (chapter 6.3's data).

    Arguments:
        path (str | Path | None, default None): a JSON-lines file with
            fields ``item``, ``topic``, ``text``; None for the file shipped
            with the package.

    Returns:
        The items, in file order.

    Raises:
        DataFileError: the file is missing or empty, a line is malformed, or
            an item id appears twice; the message names the file and the line.

    Example:
        >>> items = load_recommendation_items()
        >>> len(items), len({i.topic for i in items})
        (120, 6)

    Taught in: chapter 6.3.
    """
    path = ITEMS_FILE if path is None else Path(path)
    rows = _read_jsonl(path, ("item", "topic", "text"))
    items, seen = [], {}
    for row in rows:
        number = row["_line"]
        if row["item"] in seen:
            raise DataFileError(f"{path}:{number} repeats item id {row['item']!r} "
                                f"(first at line {seen[row['item']]}); ids must be unique")
        seen[row["item"]] = number
        items.append(Item(row["item"], row["topic"], row["text"]))
    return items


def simulate_users(
    items: Sequence[Item],
    n_users: int,
    *,
    topics_per_user: tuple[int, int] = (1, 2),
    like_prob: float = 0.85,
    noise_prob: float = 0.1,
    seed: int = 0,
) -> list[SimulatedUser]:
    """Simulate users who like one or two topics, with noise.

    The rules, in full: each user draws how many topics they like, uniformly
    from ``topics_per_user`` (inclusive), then that many distinct topics
    uniformly. They like an item of a liked topic with probability
    ``like_prob`` and an item of any other topic with probability
    ``noise_prob``, each item independently. Nothing else (item quality,
    popularity, position, time) enters, so these users test one thing: can a
    method recover a topic preference from a few ratings of texts.

    Arguments:
        items: the items every user rates.
        n_users (int): how many users.
        topics_per_user (tuple[int, int], default (1, 2)): fewest and most
            liked topics.
        like_prob (float, default 0.85): P(like | item of a liked topic).
        noise_prob (float, default 0.1): P(like | item of another topic).
        seed (int, default 0): seed of the simulation.

    Returns:
        ``n_users`` users named ``user-000``, ``user-001``, ...

    Raises:
        ValueError: no items, ``n_users`` < 1, a probability outside [0, 1],
            or ``topics_per_user`` not ``1 <= low <= high <= number of topics``.

    Example:
        >>> users = simulate_users(load_recommendation_items(), 3, seed=0)
        >>> [len(u.likes) for u in users]
        [120, 120, 120]

    Taught in: chapter 6.3.
    """
    if not items:
        raise ValueError("simulate_users needs at least one item")
    if n_users < 1:
        raise ValueError(f"n_users must be at least 1, got {n_users}")
    for name, p in (("like_prob", like_prob), ("noise_prob", noise_prob)):
        if not 0 <= p <= 1:
            raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
    topics = sorted({item.topic for item in items})
    low, high = topics_per_user
    if not 1 <= low <= high <= len(topics):
        raise ValueError(f"topics_per_user must satisfy 1 <= low <= high <= {len(topics)} (the number of "
                         f"topics), got {topics_per_user}")
    rng = random.Random(seed)
    users = []
    for u in range(n_users):
        liked = tuple(sorted(rng.sample(topics, rng.randint(low, high))))
        likes = tuple(rng.random() < (like_prob if item.topic in liked else noise_prob) for item in items)
        users.append(SimulatedUser(f"user-{u:03d}", liked, likes))
    return users
