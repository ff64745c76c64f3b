"""Part 6's data files and the frozen-vector few-shot models (metalearn_nlp.data.applications, .applications)."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
import torch

from metalearn_nlp.applications import (
    centroid_scores,
    episode_indices,
    fit_linear_classifier,
    meta_train_projection,
    outcome_counts,
    precision_at_k,
    sentence_vectors,
)
from metalearn_nlp.data.applications import (
    FINANCE_LABELS,
    DataFileError,
    load_finance_headlines,
    load_recommendation_items,
    simulate_users,
)
from metalearn_nlp.evaluation import bootstrap_interval


# -- the shipped files ----------------------------------------------------------------------------
def test_finance_file_is_balanced_per_company():
    headlines = load_finance_headlines()
    assert len(headlines) == 216
    per_company = Counter((h.company, h.label) for h in headlines)
    assert len({h.company for h in headlines}) == 12
    assert set(per_company.values()) == {6}  # 6 of each label for every company
    assert all(h.company.split()[0] in h.text for h in headlines)  # every headline names its company
    assert len({h.text for h in headlines}) == len(headlines)


def test_items_file_has_six_topics_of_twenty():
    items = load_recommendation_items()
    assert Counter(i.topic for i in items) == {t: 20 for t in {i.topic for i in items}}
    assert len({i.item for i in items}) == 120 and len({i.text for i in items}) == 120


def test_package_data_is_declared():
    text = open(__import__("pathlib").Path(__file__).parents[1] / "pyproject.toml").read()
    assert "data/finance_headlines.jsonl" in text and "data/recommendation_items.jsonl" in text


# -- reader errors name file and line -------------------------------------------------------------
def _write(tmp_path, lines):
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_reader_names_file_and_line_of_bad_json(tmp_path):
    good = json.dumps({"company": "A Co", "sector": "x", "text": "A Co rises", "label": "positive"})
    path = _write(tmp_path, [good, "{not json"])
    with pytest.raises(DataFileError, match=r"data\.jsonl:2: not valid JSON"):
        load_finance_headlines(path)


def test_reader_names_missing_field(tmp_path):
    path = _write(tmp_path, [json.dumps({"company": "A Co", "sector": "x", "text": "A Co rises"})])
    with pytest.raises(DataFileError, match=r"data\.jsonl:1: missing field 'label'"):
        load_finance_headlines(path)


def test_reader_rejects_unknown_label_and_duplicates(tmp_path):
    row = {"company": "A Co", "sector": "x", "text": "A Co rises", "label": "bullish"}
    with pytest.raises(DataFileError, match="'bullish' is not one of"):
        load_finance_headlines(_write(tmp_path, [json.dumps(row)]))
    row["label"] = "positive"
    with pytest.raises(DataFileError, match=r"\.jsonl:3 repeats the text of line 1"):
        load_finance_headlines(_write(tmp_path, [json.dumps(row), "", json.dumps(row)]))  # blank lines count
    item = json.dumps({"item": "a", "topic": "t", "text": "x"})
    with pytest.raises(DataFileError, match=r"\.jsonl:2 repeats item id 'a' \(first at line 1\)"):
        load_recommendation_items(_write(tmp_path, [item, item]))


def test_reader_missing_and_empty_file(tmp_path):
    with pytest.raises(DataFileError, match="no such file"):
        load_recommendation_items(tmp_path / "nope.jsonl")
    with pytest.raises(DataFileError, match="no records"):
        load_recommendation_items(_write(tmp_path, [""]))
    with pytest.raises(DataFileError, match="field 'text' must be a non-empty string"):
        load_recommendation_items(_write(tmp_path, [json.dumps({"item": "a", "topic": "t", "text": " "})]))


# -- simulated users ------------------------------------------------------------------------------
def test_simulated_users_follow_the_stated_rules():
    items = load_recommendation_items()
    users = simulate_users(items, 200, seed=3)
    assert {len(u.liked_topics) for u in users} == {1, 2}
    inside = [like for u in users for like, i in zip(u.likes, items) if i.topic in u.liked_topics]
    outside = [like for u in users for like, i in zip(u.likes, items) if i.topic not in u.liked_topics]
    assert abs(sum(inside) / len(inside) - 0.85) < 0.02
    assert abs(sum(outside) / len(outside) - 0.10) < 0.02
    assert simulate_users(items, 5, seed=3) == users[:5]  # reproducible, and a prefix does not depend on n
    noiseless = simulate_users(items, 20, like_prob=1.0, noise_prob=0.0, seed=1)
    for u in noiseless:
        assert all(like == (i.topic in u.liked_topics) for like, i in zip(u.likes, items))


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_users=0), "n_users"), (dict(n_users=2, like_prob=1.5), "like_prob"),
    (dict(n_users=2, topics_per_user=(0, 2)), "topics_per_user"),
    (dict(n_users=2, topics_per_user=(1, 9)), "topics_per_user"),
])  # fmt: skip
def test_simulate_users_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_users(load_recommendation_items(), **kwargs)


# -- models on fixed vectors ----------------------------------------------------------------------
def _clusters(n_per_class=10, classes=3, dim=8, spread=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 3
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    return centres[labels] + spread * torch.randn(len(labels), dim, generator=g), labels


def test_centroid_scores_pick_the_nearest_mean_and_mask_missing_classes():
    x, y = _clusters()
    support, query = episode_indices(y.tolist(), 2, random.Random(0))
    scores = centroid_scores(x[support], y[support], x[query], 3)
    assert (scores.argmax(1) == y[query]).all()
    only_two = [i for i in support if y[i] != 2]
    scores = centroid_scores(x[only_two], y[only_two], x[query], 3)
    assert torch.isinf(scores[:, 2]).all() and (scores[:, 2] < 0).all()
    with pytest.raises(ValueError, match="support_labels must lie in 0..2"):
        centroid_scores(x[:2], torch.tensor([0, 3]), x, 3)


def test_episode_indices_split_per_class_and_cover_the_rest():
    labels = [0] * 5 + [1] * 4 + [2] * 6
    support, query = episode_indices(labels, 2, random.Random(1))
    assert Counter(labels[i] for i in support) == {0: 2, 1: 2, 2: 2}
    assert sorted(support + query) == list(range(len(labels)))
    assert episode_indices(labels, 2, random.Random(1)) == (support, query)
    with pytest.raises(ValueError, match="class 1 has 4 examples; 4 shots need at least 5"):
        episode_indices(labels, 4, random.Random(0))
    with pytest.raises(ValueError, match="class 3 has 0 examples"):
        episode_indices(labels, 1, random.Random(0), n_classes=4)


def test_linear_classifier_learns_separable_data():
    x, y = _clusters(seed=2)
    model = fit_linear_classifier(x, y, 3, steps=200)
    assert (model(x).argmax(1) == y).float().mean() == 1.0
    assert not any(p.requires_grad for p in model.parameters())


def test_meta_trained_projection_starts_at_identity_and_learns_a_useful_direction():
    # class depends on dimension 0 only; dimensions 1.. are large per-task noise
    g = torch.Generator().manual_seed(0)
    tasks, vectors, labels = [], [], []
    for t in range(12):
        offset = torch.randn(16, generator=g) * 3
        offset[0] = 0
        for c in range(2):
            for _ in range(6):
                v = offset + 0.8 * torch.randn(16, generator=g)
                v[0] = 2.0 * c - 1 + 0.3 * torch.randn(1, generator=g)
                vectors.append(v)
                labels.append(c)
        tasks.append(list(range(12 * t, 12 * (t + 1))))
    x, y = torch.stack(vectors), torch.tensor(labels)

    def sample(rng):
        ids = torch.tensor(rng.choice(tasks[:8]))
        s, q = episode_indices(y[ids].tolist(), 1, rng)
        return ids[s], y[ids[s]], ids[q], y[ids[q]], 2

    def accuracy(projection):
        rng, right, total = random.Random(5), 0, 0
        for ids in tasks[8:]:
            for _ in range(10):
                ids_t = torch.tensor(ids)
                s, q = episode_indices(y[ids_t].tolist(), 1, rng)
                s, q = ids_t[s], ids_t[q]
                pred = centroid_scores(projection(x[s]), y[s], projection(x[q]), 2).argmax(1)
                right, total = right + int((pred == y[q]).sum()), total + len(q)
        return right / total

    untrained, _ = meta_train_projection(x, sample, steps=0)
    assert torch.equal(untrained.weight, torch.eye(16))
    trained, losses = meta_train_projection(x, sample, steps=300, lr=1e-2, scale=1.0, seed=0)
    assert len(losses) == 300 and sum(losses[-50:]) < sum(losses[:50])
    assert accuracy(trained) > accuracy(untrained) + 0.1


def test_outcome_counts_feed_the_bootstrap_as_accuracy():
    assert outcome_counts(torch.tensor([1, 1, 0, 2]), torch.tensor([1, 0, 0, 2])) == (4, 4, 3)
    low, high = bootstrap_interval([outcome_counts([1, 1], [1, 1])] * 5, seed=0)
    assert low == high == 1.0
    with pytest.raises(ValueError, match="equal length"):
        outcome_counts([1], [1, 2])


def test_precision_at_k_and_tie_break():
    assert precision_at_k([0.1, 0.9, 0.5], [False, True, False], 1) == 1.0
    assert precision_at_k([0.1, 0.9, 0.5], [False, True, False], 2) == 0.5
    assert precision_at_k([1.0, 1.0, 1.0], [True, False, False], 1) == 1.0  # ties: earlier item first
    with pytest.raises(ValueError, match="k must be in 1..3"):
        precision_at_k([1.0, 2.0, 3.0], [True, True, True], 4)


def test_sentence_vectors_are_unit_length_and_batch_independent(tiny_encoder):
    texts = ["Ada wrote the first program .", "Paris", "the program in Paris ."]
    together = sentence_vectors(tiny_encoder, texts, batch_size=3)
    alone = torch.cat([sentence_vectors(tiny_encoder, [t]) for t in texts])
    assert together.shape == (3, tiny_encoder.model.config.hidden_size)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)  # padding changes nothing
    torch.testing.assert_close(together.norm(dim=1), torch.ones(3))
    with pytest.raises(ValueError, match=r"texts\[1\] is empty"):
        sentence_vectors(tiny_encoder, ["Ada", "  "])


def test_finance_labels_are_sorted_constants():
    assert FINANCE_LABELS == tuple(sorted(FINANCE_LABELS))
