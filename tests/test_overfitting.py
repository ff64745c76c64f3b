"""The chapter 9 experiment's parts: augmented episodes, remedy settings, the paired bootstrap, one tiny run."""

from __future__ import annotations

import pytest

from metalearn_nlp.data import FewNERDSampler
from metalearn_nlp.data.tags import spans
from metalearn_nlp.evaluation import evaluate, paired_difference_interval
from metalearn_nlp.overfitting import AugmentedEpisodes, remedy_settings, run_remedy


def _types(sentence, scheme):
    return [s.type for s in spans(sentence.tags, scheme)]


def test_augmented_episodes_swap_mentions_within_their_type(toy_corpus):
    episodes = FewNERDSampler(toy_corpus, ways=3, shots=1, seed=0).episodes(2)
    sampler = AugmentedEpisodes(episodes, probability=1.0, seed=0)
    first, second, third = sampler.sample(), sampler.sample(), sampler.sample()
    for original, new in ((episodes[0], first), (episodes[1], second), (episodes[0], third)):
        assert new.types == original.types and len(new.support) == len(original.support)
        for a, b in zip((*original.support, *original.query), (*new.support, *new.query)):
            assert _types(a, original.scheme) == _types(b, new.scheme)    # the same types, in order
    changed = sum(a.tokens != b.tokens for a, b in zip(episodes[0].support, first.support))
    assert changed > 0
    again = AugmentedEpisodes(episodes, probability=1.0, seed=0).sample()
    assert again == first                                                  # seeded
    assert AugmentedEpisodes(episodes, probability=0.0).sample() == episodes[0]


def test_augmented_episodes_refuse_bad_input(toy_corpus):
    with pytest.raises(ValueError, match="at least one episode"):
        AugmentedEpisodes([])
    episodes = FewNERDSampler(toy_corpus, ways=3, shots=1, seed=0).episodes(1)
    with pytest.raises(ValueError, match="probability"):
        AugmentedEpisodes(episodes, probability=1.5)


def test_remedy_settings_change_only_their_own_setting():
    plain = remedy_settings("plain")
    for remedy, key in (("dropout", "dropout"), ("weight_decay", "weight_decay"), ("fgm", "epsilon"),
                        ("augmentation", "augment_probability"), ("freeze", "freeze")):
        changed = {k for k, v in remedy_settings(remedy).items() if plain[k] != v}
        assert changed == {key}, remedy
    assert remedy_settings("plain", steps=7)["steps"] == 7
    with pytest.raises(ValueError, match="unknown remedy"):
        remedy_settings("mixup")
    with pytest.raises(ValueError, match="unknown setting"):
        remedy_settings("plain", stepz=3)


def _simple_report(counts):
    class R:  # only episode_counts is read
        episode_counts = [tuple(c) for c in counts]
    return R()


def test_paired_difference_interval():
    a = _simple_report([(4, 4, 3), (2, 2, 1), (5, 5, 5), (3, 3, 0)])
    b = _simple_report([(4, 4, 1), (2, 2, 1), (5, 5, 2), (3, 3, 0)])
    assert paired_difference_interval(a, a) == (0.0, 0.0, 0.0)
    diff, low, high = paired_difference_interval(a, b, seed=1)
    assert diff == pytest.approx(2 * 9 / 28 - 2 * 4 / 28)
    assert 0 <= low <= diff <= high and high > 0       # a is never worse on any episode
    low2 = paired_difference_interval(b, a, seed=1)
    assert low2[0] == pytest.approx(-diff) and low2[2] == pytest.approx(-low)
    with pytest.raises(ValueError, match="same episodes"):
        paired_difference_interval(a, _simple_report([(1, 1, 1)]))


def test_run_remedy_records_curves_and_early_stopping_keeps_the_best_dev_weights(tiny_bert_path, toy_corpus):
    train = FewNERDSampler(toy_corpus, ways=3, shots=1, seed=0).episodes(3)
    dev = FewNERDSampler(toy_corpus, ways=3, shots=1, seed=1).episodes(2)
    run = run_remedy("early_stopping", train, dev, encoder=str(tiny_bert_path), freeze=0, steps=4, eval_every=2,
                     lr=1e-3)
    assert [c["step"] for c in run.curve][:1] == [0] and all(0 <= c["dev_f1"] <= 1 for c in run.curve)
    best = max(d["f1"] for d in run.result.dev)
    assert evaluate(run.learner, dev, progress=False).f1 == pytest.approx(best)
    fgm = run_remedy("fgm", train, dev, encoder=str(tiny_bert_path), freeze=0, steps=2, eval_every=1)
    assert type(fgm.learner).__name__ == "FGM" and [c["step"] for c in fgm.curve] == [0, 1, 2]
