"""Episode files: JSON lines, a header with settings and sha256, byte-identical for a seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from metalearn_nlp.data.files import _file_digest
from metalearn_nlp.data import (
    ClassSampler,
    EpisodeFileError,
    FewNERDSampler,
    LabelledText,
    TaggedSentence,
    load_episodes,
    save_episodes,
    write_conll,
)

TYPES = ["person", "geo-loc", "company", "movie", "tvshow", "product"]
SENTENCES = [
    TaggedSentence(["😂", f"{t}{i}", "and", f"{u}{i}"], ["O", f"B-{t}", "O", f"B-{u}"])
    for i in range(6)
    for t, u in zip(TYPES, TYPES[1:] + TYPES[:1])
]


def sample_file(path: Path, seed: int) -> bytes:
    sampler = FewNERDSampler(SENTENCES, ways=5, shots=1, seed=seed)
    save_episodes(path, sampler.episodes(40), sampler.settings)
    return path.read_bytes()


def test_save_and_load_round_trip(tmp_path: Path):
    sampler = FewNERDSampler(SENTENCES, ways=3, shots=2, seed=1)
    episodes = sampler.episodes(10)
    path = tmp_path / "test.jsonl"
    save_episodes(path, episodes, sampler.settings)
    loaded, settings = load_episodes(path)
    assert loaded == episodes
    assert settings == sampler.settings
    header = json.loads(path.read_text(encoding="utf-8").split("\n")[0])
    assert header["count"] == 10 and header["seed"] == 1 and len(header["sha256"]) == 64
    assert len(path.read_bytes().split(b"\n")) == 10 + 2  # header, 10 episodes, final newline


def test_labelled_text_episodes_round_trip(tmp_path: Path):
    data = [LabelledText(f"text {i}", label) for label in "abc" for i in range(4)]
    sampler = ClassSampler(data, ways=2, shots=1, seed=0)
    episodes = sampler.episodes(5)
    save_episodes(tmp_path / "intents.jsonl", episodes, sampler.settings)
    assert load_episodes(tmp_path / "intents.jsonl")[0] == episodes


def test_same_seed_gives_byte_identical_files_other_seed_does_not(tmp_path: Path):
    first = sample_file(tmp_path / "a.jsonl", seed=7)
    assert sample_file(tmp_path / "b.jsonl", seed=7) == first
    assert sample_file(tmp_path / "c.jsonl", seed=8) != first


SCRIPT = """
import sys
from pathlib import Path
from metalearn_nlp.data import FewNERDSampler, read_conll, save_episodes
sentences, _ = read_conll(sys.argv[1])
sampler = FewNERDSampler(sentences, ways=5, shots=1, seed=7)
save_episodes(sys.argv[2], sampler.episodes(40), sampler.settings)
"""


def test_same_seed_gives_the_same_file_in_other_processes_and_hash_seeds(tmp_path: Path):
    corpus = tmp_path / "corpus.conll"
    write_conll(corpus, SENTENCES)
    expected = sample_file(tmp_path / "here.jsonl", seed=7)
    for hash_seed in ("1", "2"):
        out = tmp_path / f"process{hash_seed}.jsonl"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run([sys.executable, "-c", SCRIPT, str(corpus), str(out)], check=True, env=env)
        assert out.read_bytes() == expected


def test_a_changed_file_fails_the_checksum_and_names_the_file(tmp_path: Path):
    path = tmp_path / "episodes.jsonl"
    data = sample_file(path, seed=3)
    path.write_bytes(data.replace(b"geo-loc0", b"geo-loc9", 1))
    with pytest.raises(EpisodeFileError, match=r"episodes\.jsonl: sha256 mismatch: the header records [0-9a-f]{64}") as caught:
        load_episodes(path)
    assert caught.value.path == str(path) and "changed or truncated" in str(caught.value)


def test_a_truncated_file_fails_the_checksum(tmp_path: Path):
    path = tmp_path / "episodes.jsonl"
    data = sample_file(path, seed=3)
    path.write_bytes(data[: data.rindex(b"\n", 0, -1) + 1])  # drop the last episode
    with pytest.raises(EpisodeFileError, match="sha256 mismatch"):
        load_episodes(path)


def test_a_file_without_header_is_refused(tmp_path: Path):
    path = tmp_path / "plain.jsonl"
    path.write_text('{"types": ["a"]}\n', encoding="utf-8")
    with pytest.raises(EpisodeFileError, match=r"plain\.jsonl: line 1: expected the JSON header written by save_episodes"):
        load_episodes(path)


def test_count_mismatch_is_refused(tmp_path: Path):
    path = tmp_path / "e.jsonl"
    data = sample_file(path, seed=3)
    header, body = data.split(b"\n", 1)
    fields = json.loads(header)
    fields["count"] = 41
    fields["sha256"] = _file_digest(fields, body)  # a consistent header that lies about the count
    path.write_bytes(json.dumps(fields).encode() + b"\n" + body)
    with pytest.raises(EpisodeFileError, match="the header counts 41 episodes, the file holds 40"):
        load_episodes(path)


@pytest.mark.parametrize("field,value", [("seed", 4), ("settings", {"seed": 4})])
def test_an_edited_header_fails_the_checksum(tmp_path: Path, field, value):
    path = tmp_path / "e.jsonl"
    header, body = sample_file(path, seed=3).split(b"\n", 1)
    fields = json.loads(header)
    fields[field] = value
    path.write_bytes(json.dumps(fields).encode() + b"\n" + body)
    with pytest.raises(EpisodeFileError, match="sha256 mismatch"):
        load_episodes(path)


def test_settings_must_record_the_seed(tmp_path: Path):
    with pytest.raises(ValueError, match="settings must record the 'seed'"):
        save_episodes(tmp_path / "e.jsonl", [], {"ways": 5})
