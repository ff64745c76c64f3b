"""Evaluation: pooled micro scores equal seqeval on BIO, agree across IO; reports; seed summaries."""

from __future__ import annotations

import doctest
import json
import random

import pytest
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

from metalearn_nlp import evaluation
from metalearn_nlp.data import Episode, TaggedSentence, convert_tags, entity_scores, spans, spans_to_tags
from metalearn_nlp.evaluation import Report, count_entities, evaluate, summarize
from metalearn_nlp.learners.base import Predictor

TYPES = ["per", "loc", "geo-loc"]


def _random_bio(rng: random.Random, length: int) -> list[str]:
    # any tag anywhere, including I- after O and after another type (seqeval's lenient cases)
    return [rng.choice(["O", "O", "O"] + [f"{p}-{t}" for t in TYPES for p in "BI"]) for _ in range(length)]


@pytest.mark.parametrize("seed", range(5))
def test_bio_counts_equal_seqeval(seed):
    rng = random.Random(seed)
    gold = [_random_bio(rng, rng.randint(1, 12)) for _ in range(40)]
    pred = [_random_bio(rng, len(g)) for g in gold]
    counts = count_entities(gold, pred, "bio")
    totals = [sum(c[i] for c in counts.values()) for i in range(3)]
    scores = evaluation.TypeScores.from_counts(*totals)
    assert scores.precision == pytest.approx(precision_score(gold, pred))
    assert scores.recall == pytest.approx(recall_score(gold, pred))
    assert scores.f1 == pytest.approx(f1_score(gold, pred))
    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    for type_, (n_gold, _, _) in counts.items():
        if n_gold:
            per_type = evaluation.TypeScores.from_counts(*counts[type_])
            assert per_type.f1 == pytest.approx(report[type_]["f1-score"])
            assert per_type.precision == pytest.approx(report[type_]["precision"])
            assert n_gold == report[type_]["support"]


def _no_adjacent_same_type(tags: list[str]) -> list[str]:
    """BIO tags without entities that touch another of the same type (IO can then keep them apart)."""
    kept = []
    for span in spans(tags, "bio"):
        if not (kept and kept[-1].end == span.start and kept[-1].type == span.type):
            kept.append(span)
    return spans_to_tags(kept, len(tags), "bio")


@pytest.mark.parametrize("seed", range(5))
def test_io_scores_agree_with_seqeval_on_bio_input(seed):
    rng = random.Random(100 + seed)
    gold = [_no_adjacent_same_type(_random_bio(rng, rng.randint(1, 10))) for _ in range(40)]
    pred = [_no_adjacent_same_type(_random_bio(rng, len(g))) for g in gold]
    gold_io = [convert_tags(g, "bio", "io") for g in gold]
    pred_io = [convert_tags(p, "bio", "io") for p in pred]
    io = count_entities(gold_io, pred_io, "io")
    assert io == count_entities(gold, pred, "bio")
    totals = [sum(c[i] for c in io.values()) for i in range(3)]
    assert evaluation.TypeScores.from_counts(*totals).f1 == pytest.approx(f1_score(gold, pred))
    assert entity_scores(gold_io, pred_io, scheme="io").f1 == pytest.approx(f1_score(gold, pred))


def test_count_entities_rejects_misaligned_input():
    with pytest.raises(ValueError, match="2 gold sentences but 1"):
        count_entities([["O"], ["O"]], [["O"]], "bio")
    with pytest.raises(ValueError, match="sentence 0"):
        count_entities([["O", "O"]], [["O"]], "io")
    with pytest.raises(ValueError, match="unknown scheme"):
        count_entities([["O"]], [["O"]], "iob")


class FixedPredictor(Predictor):
    def __init__(self, episode, answers):
        super().__init__(episode.label_names, episode.scheme, episode.types)
        self.answers = answers

    def logits(self, sentences):  # pragma: no cover - not used
        raise NotImplementedError

    def predict(self, sentences):
        return [self.answers[tuple(s.tokens)] for s in sentences]


class TableLearner:
    """Predicts from a table {tokens: tags}; enough of the protocol for evaluate."""

    name = "table"

    def __init__(self, answers):
        self.answers = answers

    def adapt(self, episode):
        assert episode.query  # evaluate hands over the whole episode; Learner.adapt strips it
        return FixedPredictor(episode, self.answers)

    def config(self):
        return {"learner": self.name}


def _bio_episodes():
    e1 = Episode(
        [TaggedSentence(["Ada"], ["B-per"])],
        [TaggedSentence(["Ada", "Lovelace", "in", "Paris"], ["B-per", "I-per", "O", "B-loc"]),
         TaggedSentence(["Bob"], ["B-per"])],
        ["per", "loc"], "bio",
    )
    e2 = Episode(
        [TaggedSentence(["Rome"], ["B-geo-loc"])],
        [TaggedSentence(["to", "Rome", "Oslo"], ["O", "B-geo-loc", "B-geo-loc"])],
        ["geo-loc"], "bio",
    )
    answers = {
        ("Ada", "Lovelace", "in", "Paris"): ["B-per", "O", "O", "I-loc"],
        ("Bob",): ["B-per"],
        ("to", "Rome", "Oslo"): ["O", "B-geo-loc", "I-geo-loc"],
    }
    return [e1, e2], answers


def test_evaluate_pools_every_query_sentence_like_seqeval(tmp_path):
    episodes, answers = _bio_episodes()
    report = evaluate(TableLearner(answers), episodes, progress=False, keep_predictions=True)
    gold = [list(s.tags) for e in episodes for s in e.query]
    pred = [answers[tuple(s.tokens)] for e in episodes for s in e.query]
    assert report.f1 == pytest.approx(f1_score(gold, pred))
    assert report.precision == pytest.approx(precision_score(gold, pred))
    assert report.recall == pytest.approx(recall_score(gold, pred))
    assert (report.overall.gold, report.overall.predicted, report.overall.correct) == (5, 4, 2)
    assert report.per_type["loc"].correct == 1  # seqeval's default mode: I-loc after O starts an entity
    assert report.episodes == 2 and report.sentences == 3
    assert report.predictions[2] == (1, ("to", "Rome", "Oslo"), ("O", "B-geo-loc", "B-geo-loc"),
                                     ("O", "B-geo-loc", "I-geo-loc"))
    table = report.table()
    assert "micro (pooled)" in table and "geo-loc" in table and "table on 2 episodes" in table
    path = tmp_path / "out" / "report.json"
    report.save_json(path)
    data = json.loads(path.read_text())
    assert data["overall"]["f1"] == pytest.approx(report.f1) and len(data["predictions"]) == 3
    assert Report.load_json(path) == report


def test_evaluate_refuses_mixed_schemes_and_no_episodes():
    episodes, answers = _bio_episodes()
    io = Episode([TaggedSentence(["Ada"], ["per"])], [TaggedSentence(["Bob"], ["per"])], ["per"], "io")
    with pytest.raises(ValueError, match="mix tag schemes"):
        evaluate(TableLearner(answers), [episodes[0], io], progress=False)
    with pytest.raises(ValueError, match="at least one episode"):
        evaluate(TableLearner(answers), [], progress=False)


def test_evaluate_restores_the_learners_mode(lookup_encoder, toy_episode):
    from metalearn_nlp.learners import ProtoNet

    learner = ProtoNet(lookup_encoder).train()
    report = evaluate(learner, [toy_episode], progress=False)
    assert learner.training and report.f1 == 1.0 and report.learner["learner"] == "protonet"


def _report(f1, precision=0.5, recall=0.5, per_type=None):
    overall = evaluation.TypeScores(precision, recall, f1, 10, 10, 5)
    types = {t: evaluation.TypeScores(0.0, 0.0, v, 1, 1, 0) for t, v in (per_type or {}).items()}
    return Report({"learner": "x"}, "io", overall, types, episodes=10, sentences=20, seconds=1.0)


def test_summarize_known_numbers():
    summary = summarize([_report(0.5, per_type={"a": 0.2}), _report(0.6, per_type={"a": 0.4}),
                         _report(0.7, per_type={"b": 0.9})])
    f1 = summary["f1"]
    assert f1["mean"] == pytest.approx(0.6) and f1["std"] == pytest.approx(0.1)
    t = 4.302652729696  # t_{0.975, 2} (e.g. scipy.stats.t.ppf(0.975, 2), or any t table)
    assert f1["half_width"] == pytest.approx(t * 0.1 / 3**0.5, rel=1e-9)
    assert (f1["low"], f1["high"]) == pytest.approx((0.6 - f1["half_width"], 0.6 + f1["half_width"]))
    assert summary["precision"]["std"] == 0.0 and summary["n"] == 3
    assert summary["per_type"]["a"]["mean"] == pytest.approx(0.3) and summary["per_type"]["a"]["n"] == 2
    assert summary["per_type"]["b"]["n"] == 1 and summary["per_type"]["b"]["half_width"] is None
    assert summary["text"] == "F1 60.00 ± 24.84 (95% t-interval, n=3)"
    one = summarize([_report(0.5).to_dict()])
    assert one["f1"]["half_width"] is None and "no interval" in one["text"]
    with pytest.raises(ValueError):
        summarize([])


def test_docstring_examples():
    assert doctest.testmod(evaluation, optionflags=doctest.ELLIPSIS).failed == 0


def test_bootstrap_interval_brackets_the_pooled_f1_and_stays_in_range():
    from metalearn_nlp.evaluation import bootstrap_interval

    counts = [(4, 3, 2), (5, 6, 1), (2, 0, 0), (3, 3, 3), (6, 2, 1)]
    gold, predicted, correct = (sum(c[i] for c in counts) for i in range(3))
    pooled = 2 * correct / (gold + predicted)
    low, high = bootstrap_interval(counts, seed=1)
    assert 0 <= low < pooled < high <= 1
    assert (low, high) == bootstrap_interval(counts, seed=1)          # seeded: reproducible
    narrow = bootstrap_interval(counts * 20, seed=1)                  # more episodes, narrower interval
    assert narrow[1] - narrow[0] < high - low
    assert bootstrap_interval([(0, 0, 0), (1, 1, 1)], seed=0)[1] == 1.0   # an empty episode is an F1 of 0, not NaN
    with pytest.raises(ValueError, match="triple"):
        bootstrap_interval([(1, 2)])
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_interval([])


def test_benchmark_tables_tell_apart_records_of_one_method():
    from metalearn_nlp import reporting

    assert doctest.testmod(reporting).failed == 0
    base = {"corpus": "c", "ways": 6, "shots": "5", "episodes": 3, "seeds": [0], "encoder": "e", "f1": 0.2,
            "f1_ci95": None, "precision": 0.1, "recall": 0.3, "train_seconds": 1.0, "eval_seconds_per_episode": 0.1,
            "meta_training": {"steps": 8, "lr": 1e-4, "train_shots": 5}}
    records = [{**base, "method": "transfer", "meta_training": {**base["meta_training"], "train_shots": 1}},
               {**base, "method": "transfer", "selection": {"chosen": {"o_bias": 1.0, "steps": 300}}},
               {**base, "method": "protonet", "meta_training": {**base["meta_training"], "train_shots": 1}},
               {**base, "method": "protonet", "options": {"shape_dim": 16}}]
    table = reporting.benchmark_tables(records)
    rows = [line.split(" | ")[0].lstrip("| ") for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[1:] == ["transfer", "transfer (o_bias=1, steps=300 chosen on dev)", "protonet (trained 1-shot)",
                        "protonet (shape_dim=16)"]


def test_benchmark_tables_name_the_grid_when_two_selections_chose_the_same():
    from metalearn_nlp import reporting

    base = {"corpus": "c", "ways": 6, "shots": "1", "episodes": 3, "seeds": [0], "encoder": "e", "f1": 0.2,
            "f1_ci95": None, "precision": 0.1, "recall": 0.3, "train_seconds": 1.0, "eval_seconds_per_episode": 0.1,
            "method": "protonet"}
    records = [{**base, "selection": {"chosen": {"o_bias": 4}, "grid": {"o_bias": [0, 4]}}},
               {**base, "selection": {"chosen": {"o_bias": 4}, "grid": {"o_bias": [0, 4, 8]}}},
               {**base, "method": "transfer", "selection": {"chosen": {"o_bias": 2}, "grid": {"o_bias": [0, 2]}}}]
    table = reporting.benchmark_tables(records)
    rows = [line.split(" | ")[0].lstrip("| ") for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[1:] == ["transfer (o_bias=2 chosen on dev)", "protonet (o_bias=4 chosen on dev from o_bias in [0, 4])",
                        "protonet (o_bias=4 chosen on dev from o_bias in [0, 4, 8])"]
