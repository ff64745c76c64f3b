"""The learner protocol: registry, adapt leaves weights alone and never sees the query, clear errors."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch

from metalearn_nlp.data import ClassSampler, Episode, LabelledText, TaggedSentence
from metalearn_nlp.learners import (
    LEARNERS,
    EpisodeMismatchError,
    FineTune,
    Learner,
    NotMetaTrainableError,
    ProtoNet,
    get_learner,
    support_only,
)

OPTIONS = {
    "finetune": {"steps": 3, "head_lr": 0.05},
    "structshot": {"train_sentences": "corpus"},
    "zeroshot": {"train_sentences": "corpus"},
    # transfer needs the source corpus's types; the decomposed learner's detector is untrained, so it
    # adapts a copy on the support words (the lookup world's names are far from its O words)
    "transfer": {"source_types": ["x"], "steps": 20, "head_lr": 0.05},
    "decomposed": {"detect_steps": 100, "detect_lr": 0.1},
    # the lookup world's encoder has no transformer layers: the gradient learners adapt the head only
    **{name: {"adapt_layers": 0, "adapt_steps": 10, "inner_lr": 0.1}
       for name in ("maml", "fomaml", "anil", "protomaml", "reptile", "metasgd", "learned_optimizer")},
}


def _build(name, encoder, corpus, **extra):
    options = {k: (corpus if v == "corpus" else v) for k, v in OPTIONS.get(name, {}).items()}
    return get_learner(name, encoder, **{**options, **extra})


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_registry_holds_every_learner():
    assert set(LEARNERS) == {"finetune", "protonet", "nnshot", "structshot", "zeroshot", "maml", "fomaml", "anil",
                             "protomaml", "reptile", "metasgd", "learned_optimizer", "reinforce",
                             "transfer", "decomposed"} | ({"fgm"} if "fgm" in LEARNERS else set())
    assert all(issubclass(cls, Learner) and cls.name == key for key, cls in LEARNERS.items())


def test_unknown_learner_lists_the_registry(tiny_encoder):
    with pytest.raises(KeyError, match="registered learners: anil, decomposed, fgm, finetune, fomaml, intent_centroid, intent_protomaml, "
                       "intent_protonet, learned_optimizer, maml, "
                       "metasgd, nnshot, protomaml, protonet, reinforce, reptile, structshot, transfer, zeroshot"):
        get_learner("maml-plus-plus", tiny_encoder)


@pytest.mark.parametrize(("name", "closest"), [("protonets", "protonet"), ("ProtoNet", None), ("nn-shot", "nnshot"),
                                             ("NNShot", None), ("zero_shot", "zeroshot")])
def test_unknown_learner_error_is_a_value_error_that_suggests_the_closest_name(tiny_encoder, name, closest):
    import metalearn_nlp.learners as learners

    if closest is None:  # registered (case-insensitive): no error
        assert get_learner(name, tiny_encoder).name == name.lower()
        return
    with pytest.raises(learners.UnknownLearnerError) as caught:
        get_learner(name, tiny_encoder)
    error = caught.value
    assert isinstance(error, ValueError) and isinstance(error, KeyError)  # old `except KeyError` still works
    assert str(error).startswith(f"unknown learner {name!r}; did you mean {closest!r}? registered learners: ")
    assert error.name == name and error.suggestion == closest


def test_unknown_learner_without_a_close_name_suggests_nothing(tiny_encoder):
    from metalearn_nlp.learners import UnknownLearnerError

    with pytest.raises(UnknownLearnerError, match=r"^unknown learner 'xyz'; registered learners: anil, decomposed, fgm, ") as caught:
        get_learner("xyz")
    assert caught.value.suggestion is None


def test_the_metric_learners_do_not_import_each_other():
    import ast
    import inspect

    import metalearn_nlp.learners.protonet as protonet
    import metalearn_nlp.learners.zeroshot as zeroshot

    for module, other in ((protonet, "zeroshot"), (zeroshot, "protonet")):
        tree = ast.parse(inspect.getsource(module))
        imported = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert not any(name.split(".")[-1] == other for name in imported), (module.__name__, imported)


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_adapt_leaves_the_learners_weights_unchanged(name, tiny_encoder, toy_episode, toy_corpus):
    learner = _build(name, tiny_encoder, toy_corpus)
    learner.train()
    before = _snapshot(learner)
    predictor = learner.adapt(toy_episode)
    tags = predictor.predict(toy_episode.query)
    after = learner.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), name
    assert learner.training  # mode restored
    assert [len(t) for t in tags] == [len(s.tokens) for s in toy_episode.query]
    assert all(tag in toy_episode.label_names for row in tags for tag in row)
    logits = predictor.logits(toy_episode.query[:1])[0]
    assert logits.shape == (len(toy_episode.query[0].tokens), len(toy_episode.label_names))


def test_finetuning_top_layers_leaves_the_learner_unchanged(tiny_encoder, toy_episode):
    learner = FineTune(tiny_encoder, train_layers=1, steps=3, lr=1e-2)
    before = _snapshot(learner)
    rng = torch.get_rng_state()
    predictor = learner.adapt(toy_episode)
    assert all(torch.equal(before[k], v) for k, v in learner.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())  # the global random state is untouched
    trained = predictor.encoder.model.encoder.layer[1].output.dense.weight
    assert not torch.equal(trained, tiny_encoder.model.encoder.layer[1].output.dense.weight)
    assert torch.equal(predictor.encoder.model.encoder.layer[0].output.dense.weight,
                       tiny_encoder.model.encoder.layer[0].output.dense.weight)


def test_adapt_never_sees_the_query(lookup_encoder, toy_episode):
    seen = []

    class Spy(ProtoNet):
        def _adapt(self, support):
            seen.append(support)
            return super()._adapt(support)

    Spy(lookup_encoder).adapt(toy_episode)
    assert seen[0].query == () and seen[0].query_ids == ()
    assert seen[0].support == toy_episode.support and seen[0].types == toy_episode.types
    assert support_only(toy_episode).support == toy_episode.support


def test_class_episodes_are_rejected_with_a_clear_error(tiny_encoder):
    texts = [LabelledText(f"text {i}", label) for label in "ab" for i in range(3)]
    episode = ClassSampler(texts, ways=2, shots=1).sample()
    with pytest.raises(EpisodeMismatchError, match="handles io/bio/bioes episodes.*'class'"):
        ProtoNet(tiny_encoder).adapt(episode)
    with pytest.raises(EpisodeMismatchError, match="'class'"):
        ProtoNet(tiny_encoder).loss(episode)


def test_protocol_errors(tiny_encoder, toy_episode):
    with pytest.raises(NotMetaTrainableError, match="not meta-trained"):
        FineTune(tiny_encoder).loss(toy_episode)
    empty = Episode([], [TaggedSentence(["Ada"], ["person"])], ["person"], "io")
    with pytest.raises(EpisodeMismatchError, match="non-empty support"):
        ProtoNet(tiny_encoder).adapt(empty)
    with pytest.raises(EpisodeMismatchError, match="query"):
        ProtoNet(tiny_encoder).loss(support_only(toy_episode))
    with pytest.raises(TypeError, match="Encoder"):
        ProtoNet("bert-base-cased")
    with pytest.raises(TypeError, match="Episode"):
        ProtoNet(tiny_encoder).adapt([TaggedSentence(["Ada"], ["person"])])


def test_param_groups_split_encoder_head_and_decay(tiny_encoder, toy_corpus):
    learner = get_learner("zeroshot", tiny_encoder, o_threshold=1.0)
    groups = {g["name"]: g for g in learner.param_groups(1e-5, head_lr=1e-3, weight_decay=0.1)}
    assert set(groups) == {"encoder", "encoder-no-decay", "head-no-decay"}
    assert groups["encoder"]["weight_decay"] == 0.1 and groups["encoder-no-decay"]["weight_decay"] == 0.0
    assert groups["head-no-decay"]["lr"] == 1e-3 and groups["encoder"]["lr"] == 1e-5
    assert groups["head-no-decay"]["params"] == [learner.log_threshold]
    total = sum(len(g["params"]) for g in groups.values())
    assert total == sum(p.requires_grad for p in learner.parameters())


def test_config_names_the_learner_and_encoder(tiny_encoder):
    config = FineTune(tiny_encoder, steps=7).config()
    assert config["learner"] == "finetune" and config["steps"] == 7 and config["encoder"] == tiny_encoder.name


@pytest.mark.parametrize("module", ["learners.metric", "learners.protonet", "learners.viterbi", "learners.zeroshot",
                                    "learners.finetune", "learners.base", "learners.maml", "learners.reptile",
                                    "learners.learned_optimizer", "learners.reinforce", "inner_loop"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(f"metalearn_nlp.{module}"),
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_every_learner_tags_the_lookup_world_perfectly(name, lookup_encoder, toy_corpus):
    import json

    from metalearn_nlp.data import FewNERDSampler
    from metalearn_nlp.evaluation import evaluate

    episodes = FewNERDSampler(toy_corpus, ways=3, shots=1, seed=4).episodes(3)
    extra = {"steps": 60} if name == "finetune" else {}
    report = evaluate(_build(name, lookup_encoder, toy_corpus, **extra), episodes, progress=False)
    assert report.f1 == 1.0
    json.dumps(report.to_dict())  # the learner's config is JSON-ready
