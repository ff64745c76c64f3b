"""Few-shot intent detection: intent files, intent-disjoint splits, sentence learners, class-episode scores, OOS."""

from __future__ import annotations

import json

import pytest
import torch

from metalearn_nlp.data import (
    CLASS_SCHEME,
    ClassSampler,
    Episode,
    IntentFormatError,
    LabelledText,
    load_intents,
    read_intent_jsonl,
    split_intents,
)
from metalearn_nlp.data.corpora import CorpusUnavailableError
from metalearn_nlp.evaluation import bootstrap_interval, evaluate
from metalearn_nlp.learners import (
    LEARNERS,
    OOS_LABEL,
    SENTENCE_LEARNERS,
    EpisodeMismatchError,
    get_learner,
)
from metalearn_nlp.learners.sentence import choose_oos_threshold, mean_pool, oos_scores
from metalearn_nlp.training import meta_train


# -- files -----------------------------------------------------------------------------------------
def test_jsonl_errors_name_file_and_line(tmp_path):
    path = tmp_path / "intents.jsonl"
    good = json.dumps({"text": "where is my parcel", "label": "track_order"})
    for bad, match in [
        ("{not json", r"intents.jsonl:3: not JSON"),
        (json.dumps({"text": "hi"}), r"intents.jsonl:3: expected \{\"text\""),
        (json.dumps({"text": "  ", "label": "x"}), r"intents.jsonl:3: expected \[text, intent\]"),
        (json.dumps({"text": "hi", "label": 3}), r"intents.jsonl:3: expected \[text, intent\]"),
    ]:
        path.write_text(f"{good}\n\n{bad}\n", encoding="utf-8")
        with pytest.raises(IntentFormatError, match=match):
            read_intent_jsonl(path)
    path.write_text(f"{good}\n", encoding="utf-8")
    assert read_intent_jsonl(path) == [LabelledText("where is my parcel", "track_order")]


def test_clinc150_reader_and_its_errors(tmp_path):
    data = {"train": [["book a table", "restaurant"], ["play jazz", "music"]], "val": [["next song", "music"]],
            "test": [["table for 2", "restaurant"]], "oos_train": [["how tall is a giraffe", "oos"]],
            "oos_val": [], "oos_test": [["sing", "oos"]]}
    (tmp_path / "data_full.json").write_text(json.dumps(data))
    corpus = load_intents("clinc150", path=tmp_path)
    assert sorted(corpus.splits) == ["dev", "test", "train"] and corpus.intents == ["music", "restaurant"]
    assert corpus.out_of_scope("train") == [LabelledText("how tall is a giraffe", "oos")]
    assert len(corpus.examples("train")) == 2 and len(corpus.examples()) == 4
    data["train"][1] = ["play jazz"]
    (tmp_path / "data_full.json").write_text(json.dumps(data))
    with pytest.raises(IntentFormatError, match=r"data_full.json: train\[1\]: expected \[text, intent\]"):
        load_intents("clinc150", path=tmp_path)
    (tmp_path / "data_full.json").write_text('{"train": [\n["a", "b"],\n]}')
    with pytest.raises(IntentFormatError, match=r"data_full.json:3: not JSON"):
        load_intents("clinc150", path=tmp_path)
    (tmp_path / "data_full.json").write_text('{"train": []}')
    with pytest.raises(IntentFormatError, match="expected an object with keys"):
        load_intents("clinc150", path=tmp_path)


def test_banking77_reader_and_its_errors(tmp_path):
    (tmp_path / "train.csv").write_text('text,category\n"Hi, where is my card?",card_arrival\nnew pin,change_pin\n')
    (tmp_path / "test.csv").write_text("text,category\nmy card has not come,card_arrival\n")
    corpus = load_intents("banking77", path=tmp_path)
    assert corpus.examples("train")[0] == LabelledText("Hi, where is my card?", "card_arrival")
    assert corpus.intents == ["card_arrival", "change_pin"]
    (tmp_path / "train.csv").write_text("text,category\nok,a\ntoo,many,columns\n")
    with pytest.raises(IntentFormatError, match=r"train.csv:3: expected 2 columns"):
        load_intents("banking77", path=tmp_path)
    (tmp_path / "train.csv").write_text("sentence,label\nok,a\n")
    with pytest.raises(IntentFormatError, match=r"train.csv:1: expected the header"):
        load_intents("banking77", path=tmp_path)
    (tmp_path / "train.csv").write_text("text,category\nok,a\n")
    (tmp_path / "test.csv").unlink()
    with pytest.raises(FileNotFoundError, match="test.csv"):
        load_intents("banking77", path=tmp_path)


def test_hub_names_fail_clearly_offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(CorpusUnavailableError, match="pass path="):
        load_intents("clinc150")
    with pytest.raises(ValueError, match="unknown intent set"):
        load_intents("snips")


def test_the_builtin_set():
    data = load_intents()
    assert len(data.intents) == 32 and len(data.out_of_scope()) >= 20
    sizes = {intent: sum(x.label == intent for x in data.examples()) for intent in data.intents}
    assert min(sizes.values()) >= 8
    texts = [x.text for x in data.examples() + data.out_of_scope()]
    assert len(set(texts)) == len(texts)  # no utterance twice, not even across intents


def test_split_intents_is_disjoint_and_deterministic():
    examples = load_intents().examples()
    groups = split_intents(examples, dev=8, test=8, seed=0)
    labels = {g: {x.label for x in items} for g, items in groups.items()}
    assert [len(labels[g]) for g in ("train", "dev", "test")] == [16, 8, 8]
    assert not (labels["train"] & labels["dev"]) and not (labels["train"] & labels["test"]) \
        and not (labels["dev"] & labels["test"])
    assert sum(len(v) for v in groups.values()) == len(examples)
    assert split_intents(list(reversed(examples)), dev=8, test=8, seed=0)["test"][::-1] == groups["test"]
    assert split_intents(examples, dev=8, test=8, seed=1)["test"] != groups["test"]
    with pytest.raises(ValueError, match="in-scope intents only"):
        split_intents(load_intents().out_of_scope() + examples, dev=1, test=1)
    with pytest.raises(ValueError, match="non-empty train group"):
        split_intents(examples, dev=16, test=16)


def test_class_sampler_gives_n_way_k_shot_episodes_of_one_group():
    groups = split_intents(load_intents().examples(), dev=8, test=8)
    episodes = ClassSampler(groups["test"], ways=5, shots=2, query_shots=3, seed=4).episodes(10)
    test_intents = {x.label for x in groups["test"]}
    for episode in episodes:
        assert episode.scheme == CLASS_SCHEME and episode.ways == 5 and set(episode.types) <= test_intents
        assert sorted(x.label for x in episode.support) == sorted(list(episode.types) * 2)
        assert sorted(x.label for x in episode.query) == sorted(list(episode.types) * 3)
        assert not {x.text for x in episode.support} & {x.text for x in episode.query}


# -- learners on synthetic sentence vectors --------------------------------------------------------
def clusters(n_classes: int, per_class: int, dim: int, *, spread: float, noise_dims: int = 0, seed: int = 0):
    """Texts and vectors: class c around a random centre, plus large noise in the last ``noise_dims``."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_classes, dim, generator=g)
    if noise_dims:
        centres[:, -noise_dims:] = 0
    texts, vectors, labels = [], [], []
    for c in range(n_classes):
        for i in range(per_class):
            v = centres[c] + spread * torch.randn(dim, generator=g)
            if noise_dims:
                v[-noise_dims:] = 4 * torch.randn(noise_dims, generator=g)
            texts.append(f"class {c} text {i} seed {seed}")
            vectors.append(v)
            labels.append(f"c{c}")
    return [LabelledText(t, y) for t, y in zip(texts, labels)], dict(zip(texts, vectors))


def with_vectors(learner, table):
    learner._cache.update(table)
    return learner


def test_registered_apart_from_the_word_learners(tiny_encoder):
    assert set(SENTENCE_LEARNERS) == {"intent_centroid", "intent_protonet", "intent_protomaml"}
    assert not set(SENTENCE_LEARNERS) & set(LEARNERS)
    assert get_learner("intent_protonet", tiny_encoder).meta_trainable
    assert not get_learner("intent_centroid", tiny_encoder).meta_trainable


@pytest.mark.parametrize("name, options", [("intent_centroid", {"scale": 7.0}),
                                           ("intent_protonet", {"normalize": False}),
                                           ("intent_protomaml", {"inner_steps": 2, "inner_lr": 0.3})])
def test_sentence_learners_save_and_load(tiny_encoder, tmp_path, name, options):
    from metalearn_nlp.saving import load_learner

    dim = tiny_encoder.hidden_size
    examples, table = clusters(6, 6, dim, spread=0.5, seed=3)
    episode = ClassSampler(examples, ways=3, shots=2, query_shots=3, seed=1).episodes(1)[0]
    torch.manual_seed(0)
    learner = get_learner(name, tiny_encoder, **options)
    if learner.meta_trainable:  # move the trained parameters away from their initial values
        with_vectors(learner, table)
        meta_train(learner, ClassSampler(examples, ways=3, shots=2, query_shots=3, seed=0), steps=5, lr=3e-2,
                   warmup=0, progress=False)
    learner.save_pretrained(tmp_path / name)
    loaded = with_vectors(load_learner(tmp_path / name), table)
    assert type(loaded) is type(learner) and loaded._hyperparameters() == learner._hyperparameters()
    for key, value in learner.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, msg=key)
    with_vectors(learner, table)
    assert loaded.adapt(episode).predict(episode.query) == learner.eval().adapt(episode).predict(episode.query)


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [50.0, 50.0]], [[2.0, 2.0], [9.0, 9.0], [9.0, 9.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert torch.equal(mean_pool(hidden, mask), torch.tensor([[2.0, 1.0], [2.0, 2.0]]))


def test_centroid_separates_synthetic_clusters(tiny_encoder):
    examples, table = clusters(5, 6, tiny_encoder.hidden_size, spread=0.1)
    learner = with_vectors(get_learner("intent_centroid", tiny_encoder), table)
    episodes = ClassSampler(examples, ways=5, shots=1, query_shots=5, seed=0).episodes(5)
    report = evaluate(learner, episodes, progress=False)
    assert report.accuracy == 1.0 and report.macro_f1 == 1.0
    predictor = learner.adapt(episodes[0])
    scores = predictor.logits(episodes[0].query)
    assert scores.shape == (25, 5) and predictor.predict(episodes[0].query) == [x.label for x in episodes[0].query]


def test_the_untrained_protonet_is_the_centroid_baseline(tiny_encoder):
    examples, table = clusters(4, 5, tiny_encoder.hidden_size, spread=1.0, seed=3)
    episode = ClassSampler(examples, ways=4, shots=2, query_shots=3, seed=1).sample()
    base = with_vectors(get_learner("intent_centroid", tiny_encoder), table)
    proto = with_vectors(get_learner("intent_protonet", tiny_encoder), table)
    expected = base.adapt(episode).distances(episode.query)
    torch.testing.assert_close(proto.adapt(episode).distances(episode.query), expected)


def test_meta_training_lowers_the_loss_and_leaves_the_frozen_encoder_alone(tiny_encoder):
    dim = tiny_encoder.hidden_size
    examples, table = clusters(12, 8, dim, spread=0.3, noise_dims=dim // 2, seed=5)
    torch.manual_seed(0)
    learner = with_vectors(get_learner("intent_protonet", tiny_encoder), table)
    episodes = ClassSampler(examples, ways=5, shots=1, query_shots=4, seed=9).episodes(20)
    before_encoder = {k: v.clone() for k, v in learner.encoder.state_dict().items()}
    with torch.no_grad():
        before = torch.stack([learner.loss(e) for e in episodes]).mean()
    meta_train(learner, ClassSampler(examples, ways=5, shots=1, query_shots=4, seed=0), steps=60, lr=3e-2,
               warmup=0, progress=False)
    with torch.no_grad():
        after = torch.stack([learner.loss(e) for e in episodes]).mean()
    assert after < 0.7 * before, (before, after)
    assert all(torch.equal(v, learner.encoder.state_dict()[k]) for k, v in before_encoder.items())
    assert learner.scale != pytest.approx(10.0)  # the temperature is learned too


def test_the_real_pooling_path_and_an_unfrozen_encoder(tiny_encoder):
    texts = ["where is my parcel", "cancel my order", "reset my password please"]
    episode = Episode([LabelledText(texts[0], "a"), LabelledText(texts[1], "b")], [LabelledText(texts[2], "a")],
                      ["a", "b"], CLASS_SCHEME)
    frozen = get_learner("intent_centroid", tiny_encoder)
    vectors = frozen.pooled(texts)
    assert vectors.shape == (3, tiny_encoder.hidden_size) and len(frozen._cache) == 3
    torch.testing.assert_close(frozen.pooled(texts[:1]), vectors[:1])
    learner = get_learner("intent_protonet", tiny_encoder.clone(), freeze="none")
    assert not learner.frozen
    learner.loss(episode).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in learner.encoder.parameters())
    with pytest.raises(ValueError, match="frozen encoder"):
        learner.precompute(texts)


def test_tagging_episodes_are_refused(tiny_encoder, toy_episode):
    with pytest.raises(EpisodeMismatchError, match="handles class episodes; this episode is 'io'"):
        get_learner("intent_protonet", tiny_encoder).loss(toy_episode)


# -- scores on class episodes ---------------------------------------------------------------------
class FixedLearner:
    """Predicts the labels it is given, episode by episode."""

    name = "fixed"

    def __init__(self, answers):
        self.answers = iter(answers)

    def adapt(self, episode):
        answer = next(self.answers)
        return type("P", (), {"predict": lambda self, texts: list(answer)})()


def test_accuracy_and_macro_f1_match_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    accuracy_score, f1_score = metrics.accuracy_score, metrics.f1_score

    def text(label, i):
        return LabelledText(f"{label} {i}", label)

    episodes = [
        Episode([text("a", 0), text("b", 0)], [text("a", 1), text("a", 2), text("b", 1)], ["a", "b"], CLASS_SCHEME),
        Episode([text("c", 0), text("a", 9)], [text("c", 1), text("a", 3), text("c", 2), text("a", 4)], ["c", "a"],
                CLASS_SCHEME),
    ]
    answers = [["a", "b", "b"], ["c", "c", OOS_LABEL, "a"]]
    report = evaluate(FixedLearner(answers), episodes, progress=False, keep_predictions=True)
    gold = [x.label for e in episodes for x in e.query]
    predicted = [y for a in answers for y in a]
    assert report.accuracy == pytest.approx(accuracy_score(gold, predicted)) == pytest.approx(4 / 7)
    assert report.macro_f1 == pytest.approx(f1_score(gold, predicted, average="macro", zero_division=0))
    assert report.f1 == pytest.approx(report.accuracy)  # one label per text: pooled micro-F1 is accuracy
    assert report.episode_counts == [(3, 3, 2), (4, 4, 2)] and report.sentences == 7
    assert report.class_counts[1][OOS_LABEL] == (0, 1, 0)
    assert [p.predicted for p in report.predictions][:2] == [("a",), ("b",)]
    again = type(report).from_dict(json.loads(json.dumps(report.to_dict())))
    assert again.macro_f1 == pytest.approx(report.macro_f1) and again.class_counts == report.class_counts
    assert "accuracy 57.14" in report.table()


def test_bootstrap_intervals_of_accuracy_and_macro_f1():
    metrics = pytest.importorskip("sklearn.metrics")
    f1_score = metrics.f1_score

    import random

    rng = random.Random(0)
    episodes, answers = [], []
    for e in range(30):
        labels = ["a", "b", "c"]
        query = [LabelledText(f"{y} {e} {i}", y) for y in labels for i in range(2)]
        episodes.append(Episode([LabelledText(f"{y} s{e}", y) for y in labels], query, labels, CLASS_SCHEME))
        answers.append([x.label if rng.random() > 0.3 else rng.choice(["a", "b"]) for x in query])
    report = evaluate(FixedLearner(answers), episodes, progress=False)
    for metric, value in (("accuracy", report.accuracy), ("macro_f1", report.macro_f1)):
        low, high = bootstrap_interval(report, metric=metric, seed=0)
        assert 0 <= low < value < high <= 1, metric
        assert (low, high) == bootstrap_interval(report, metric=metric, seed=0)
    assert bootstrap_interval(report, metric="accuracy") == bootstrap_interval(report)
    one = evaluate(FixedLearner(answers[:1]), episodes[:1], progress=False)
    gold = [x.label for x in episodes[0].query]
    low, high = bootstrap_interval(one, metric="macro_f1")  # one episode: every resample is the sample itself
    assert low == pytest.approx(high) == pytest.approx(f1_score(gold, answers[0], average="macro"))
    with pytest.raises(ValueError, match="metric must be"):
        bootstrap_interval(report, metric="micro")
    with pytest.raises(ValueError, match="needs a Report of evaluate"):
        bootstrap_interval([(1, 1, 1)], metric="macro_f1")


def test_macro_f1_is_refused_on_tagging_reports(tiny_encoder, toy_episode):
    report = evaluate(get_learner("protonet", tiny_encoder), [toy_episode], progress=False)
    with pytest.raises(ValueError, match="class episodes"):
        _ = report.macro_f1
    with pytest.raises(ValueError, match="needs a Report of evaluate"):
        bootstrap_interval(report, metric="macro_f1")


# -- out of scope ---------------------------------------------------------------------------------
def test_oos_threshold_rejects_far_utterances(tiny_encoder):
    dim = tiny_encoder.hidden_size
    examples, table = clusters(5, 8, dim, spread=0.05, seed=2)
    g = torch.Generator().manual_seed(7)
    far = {f"off topic {i}": 3 * torch.randn(dim, generator=g) for i in range(20)}
    learner = with_vectors(get_learner("intent_centroid", tiny_encoder), {**table, **far})
    dev = ClassSampler(examples, ways=5, shots=2, query_shots=3, seed=0).episodes(4)
    oos = list(far)
    threshold = choose_oos_threshold(learner, dev, oos[:10])
    scores = oos_scores(learner, dev, oos[10:], threshold)
    assert scores["in_scope_accuracy"] == 1.0 and scores["oos_recall"] == 1.0 and scores["balanced"] == 1.0
    never = oos_scores(learner, dev, oos[10:], None)
    assert never["oos_recall"] == 0.0 and never["in_scope_accuracy"] == 1.0
    predictor = learner.adapt(dev[0]).with_threshold(threshold)
    assert predictor.predict([oos[10], dev[0].query[0]]) == [OOS_LABEL, dev[0].query[0].label]
    assert learner.adapt(dev[0]).predict([oos[10]]) != [OOS_LABEL]  # no threshold, no rejection
    report = evaluate(type("T", (), {"adapt": lambda self, e: learner.adapt(e).with_threshold(0.0)})(), dev,
                      progress=False)
    assert report.accuracy == 0.0 and set(report.per_type) >= {OOS_LABEL}  # all rejected: all wrong
    with pytest.raises(ValueError, match="out-of-scope texts"):
        choose_oos_threshold(learner, dev, [])
    linear = with_vectors(get_learner("intent_protomaml", tiny_encoder, inner_steps=1), {**table, **far})
    with pytest.raises(TypeError, match="no out-of-scope threshold; use intent_centroid"):
        choose_oos_threshold(linear, dev, oos[:10])


# -- ProtoMAML on sentence vectors -----------------------------------------------------------------
def test_protomaml_starts_as_protonet_and_its_steps_lower_the_support_loss(tiny_encoder):
    import torch.nn.functional as F

    examples, table = clusters(4, 6, tiny_encoder.hidden_size, spread=1.5, seed=11)
    episode = ClassSampler(examples, ways=4, shots=2, query_shots=3, seed=2).sample()
    proto = with_vectors(get_learner("intent_protonet", tiny_encoder), table)
    zero = with_vectors(get_learner("intent_protomaml", tiny_encoder, inner_steps=0), table)
    assert zero.adapt(episode).predict(episode.query) == proto.adapt(episode).predict(episode.query)
    torch.testing.assert_close(zero.adapt(episode).logits(episode.query).softmax(1),
                               proto.adapt(episode).logits(episode.query).softmax(1))
    labels = torch.tensor([episode.encode_label(x) for x in episode.support])

    def support_loss(learner):
        return F.cross_entropy(learner.adapt(episode).logits(episode.support), labels).item()

    stepped = with_vectors(get_learner("intent_protomaml", tiny_encoder, inner_steps=5, inner_lr=0.5), table)
    assert support_loss(stepped) < support_loss(zero)
    with pytest.raises(ValueError, match="inner_lr"):
        get_learner("intent_protomaml", tiny_encoder, inner_lr=0)


@pytest.mark.parametrize("first_order", [False, True])
def test_protomaml_meta_training_lowers_the_query_loss(tiny_encoder, first_order):
    dim = tiny_encoder.hidden_size
    examples, table = clusters(12, 8, dim, spread=0.3, noise_dims=dim // 2, seed=5)
    torch.manual_seed(0)
    learner = with_vectors(get_learner("intent_protomaml", tiny_encoder, inner_steps=2, inner_lr=0.1,
                                       first_order=first_order), table)
    episodes = ClassSampler(examples, ways=5, shots=1, query_shots=4, seed=9).episodes(20)
    before = torch.stack([learner.loss(e).detach() for e in episodes]).mean()
    meta_train(learner, ClassSampler(examples, ways=5, shots=1, query_shots=4, seed=0), steps=60, lr=3e-2,
               warmup=0, progress=False)
    after = torch.stack([learner.loss(e).detach() for e in episodes]).mean()
    assert after < 0.8 * before, (before, after)
    assert evaluate(learner, episodes, progress=False).accuracy > 0.5
