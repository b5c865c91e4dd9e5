"""Queue sources for the labeller: lists, files, RL samples, active learning."""

import json

import pytest
from ui_fakes import FakeStage

from rlhf_lab.active import (
    ActiveLearningSource,
    StageSource,
    as_items,
    items_from_file,
    normalise_item,
    pairs_from_samples,
)


def test_normalise_accepts_the_usual_shapes():
    assert normalise_item({"prompt": "p", "chosen": "a", "rejected": "b"})["responses"] == ["a", "b"]
    assert normalise_item({"prompt": "p", "a": "x", "b": "y", "policy_step": 3})["policy_step"] == 3
    for bad, message in [
        ({"responses": ["a", "b"]}, "prompt"),
        ({"prompt": "p", "responses": ["a"]}, "two"),
        ({"prompt": "p", "responses": ["a", "a"]}, "differ"),
        ({"prompt": " ", "responses": ["a", "b"]}, "prompt"),
        ("text", "dict"),
    ]:
        with pytest.raises(ValueError, match=message):
            normalise_item(bad)


@pytest.mark.parametrize("source", [5, 2.5, True])
def test_as_items_names_what_it_takes(source):
    # lab.label(5) used to fail with "'int' object is not iterable"
    with pytest.raises(TypeError, match=r"items must be a list of .* got (int|float|bool)"):
        as_items(source)


def test_pairs_from_samples_groups_by_prompt():
    samples = [
        {"prompt": "p1", "response": "a"},
        {"prompt": "p1", "response": "b"},
        {"prompt": "p1", "response": "a"},  # duplicate text: one response
        {"prompt": "p2", "response": "c"},  # alone: dropped without a generator
        {"prompt": "p3", "response": "d"},
        {"prompt": "p3", "response": "e"},
        {"prompt": "p3", "response": "f"},
        {"prompt": "p3", "response": "g"},
    ]
    items = pairs_from_samples(samples, policy_step=7)
    assert sorted(it["prompt"] for it in items) == ["p1", "p3", "p3"]
    assert all(len(set(it["responses"])) == 2 and it["policy_step"] == 7 for it in items)
    p3 = [r for it in items if it["prompt"] == "p3" for r in it["responses"]]
    assert sorted(p3) == ["d", "e", "f", "g"]


def test_pairs_from_samples_asks_the_generator_for_a_second_response():
    calls = []

    def generate(prompt, n):
        calls.append((prompt, n))
        return [f"another answer to {prompt}"] * n

    items = pairs_from_samples([{"prompt": "p", "response": "one"}], generate=generate)
    assert calls == [("p", 1)]
    assert sorted(items[0]["responses"]) == ["another answer to p", "one"]


def test_a_list_of_rl_samples_is_paired_by_prompt_with_each_prompts_latest_step():
    samples = [
        {"step": 3, "prompt": "p1", "response": "a", "score": 0.1},
        {"step": 4, "prompt": "p1", "response": "b", "score": 0.2},
        {"step": 4, "prompt": "p2", "response": "c", "score": 0.3},
    ]
    items = as_items(samples, generate=lambda prompt, n: [f"more for {prompt}"] * n)
    by_prompt = {it["prompt"]: it for it in items}
    assert sorted(by_prompt["p1"]["responses"]) == ["a", "b"] and by_prompt["p1"]["policy_step"] == 4
    assert sorted(by_prompt["p2"]["responses"]) == ["c", "more for p2"]
    assert all(it["source"] == "policy" for it in items)
    # rank mode: items of k answers
    ranked = as_items(samples, k=3, generate=lambda prompt, n: [f"{prompt} #{i}" for i in range(n)])
    assert all(len(it["responses"]) == 3 for it in ranked)


def test_a_dataframe_gives_its_rows_not_its_column_names():
    import pandas as pd

    pairs = pd.DataFrame(
        [
            {"prompt": "p", "chosen": "good", "rejected": "bad", "policy_step": 3},
            {"prompt": "q", "chosen": "yes", "rejected": "no"},  # no step: NaN in the frame
        ]
    )
    items = as_items(pairs)
    assert items[0]["responses"] == ["good", "bad"] and items[0]["policy_step"] == 3
    assert isinstance(items[0]["policy_step"], int)  # 3.0 in the frame: the store takes whole steps only
    assert "policy_step" not in items[1]
    samples = pd.DataFrame(
        [{"step": 2, "prompt": "p", "response": "a"}, {"step": 2, "prompt": "p", "response": "b"}]
    )
    assert sorted(as_items(samples)[0]["responses"]) == ["a", "b"]  # e.g. ppo.samples_dataframe()


def test_rl_samples_that_cannot_pair_say_how_to_pair_them():
    one_each = [{"step": 1, "prompt": "p1", "response": "a"}, {"step": 1, "prompt": "p2", "response": "b"}]
    with pytest.raises(ValueError, match=r"2 RL sample\(s\) give no item of 2 .*generate="):
        as_items(one_each)
    assert as_items([]) == []
    # an item among samples is not a sample list: each row must then be an item
    with pytest.raises(ValueError, match="responses"):
        as_items([*one_each, {"prompt": "p", "responses": ["x", "y"]}])


def test_stage_source_reads_samples():
    stage = FakeStage()
    stage.step(2)
    items = StageSource(stage).next(10)
    assert items and all(it["policy_step"] == 2 for it in items)
    assert {it["prompt"] for it in items} <= {s["prompt"] for s in stage.samples(10)}
    assert as_items(stage)  # a stage with samples() is a source too


def test_items_from_file(tmp_path):
    path = tmp_path / "queue.jsonl"
    rows = [
        {"prompt": "p1", "responses": ["a", "b"]},
        {"prompt": "p2", "chosen": "good", "rejected": "bad"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    items = items_from_file(path)
    assert items[0]["responses"] == ["a", "b"] and items[0]["source"] == "import:queue"
    assert sorted(items[1]["responses"]) == ["bad", "good"]
    assert as_items(str(path)) == items
    path.write_text(json.dumps(rows[0]) + "\n" + json.dumps({"prompt": "p3"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="row 2"):
        items_from_file(path)


def length_scorer(prompts, responses):
    return [float(len(r)) for r in responses]


def first_letter_scorer(prompts, responses):
    return [float(ord(r[0])) for r in responses]


CANDIDATES = [
    {"prompt": "p0", "responses": ["aaaaaaaa", "b"]},  # margin +7
    {"prompt": "p1", "responses": ["aaa", "bb"]},  # margin +1
    {"prompt": "p2", "responses": ["z", "aaaa"]},  # margin -3
    {"prompt": "p3", "responses": ["aa", "bb"]},  # margin 0: most uncertain
]


def test_uncertainty_picks_smallest_margin_first_and_never_twice():
    source = ActiveLearningSource(CANDIDATES, length_scorer)
    assert [it["prompt"] for it in source.next(2)] == ["p3", "p1"]
    assert [it["prompt"] for it in source.next(5)] == ["p2", "p0"]
    assert source.next(1) == [] and len(source) == 0


def test_disagreement_prefers_pairs_the_ensemble_splits_on():
    source = ActiveLearningSource(CANDIDATES, [length_scorer, first_letter_scorer], strategy="disagreement")
    # p2: length says B, first letter says A ("z" > "a"); p1/p3 both agree or tie
    assert source.next(1)[0]["prompt"] == "p2"
    with pytest.raises(ValueError, match="ensemble"):
        ActiveLearningSource(CANDIDATES, length_scorer, strategy="disagreement")


def test_random_is_seeded_and_switchable():
    a = ActiveLearningSource(CANDIDATES, length_scorer, strategy="random", seed=3)
    b = ActiveLearningSource(CANDIDATES, length_scorer, strategy="random", seed=3)
    assert [x["prompt"] for x in a.next(4)] == [x["prompt"] for x in b.next(4)]
    c = ActiveLearningSource(CANDIDATES, length_scorer, strategy="random")
    c.strategy = "uncertainty"
    assert c.next(1)[0]["prompt"] == "p3"
    with pytest.raises(ValueError, match="strategy"):
        c.strategy = "vibes"


def test_scorers_may_be_judges_or_ensembles():
    class Judge:  # rlhf_lab.raters style: score(prompt, response), __call__ compares two
        def score(self, prompt, response):
            return float(len(response))

        def __call__(self, prompt, a, b):
            raise AssertionError("a judge's pairwise call is not a scorer")

    class Ensemble:
        members = [length_scorer, first_letter_scorer]

    assert ActiveLearningSource(CANDIDATES, Judge()).next(1)[0]["prompt"] == "p3"
    source = ActiveLearningSource(CANDIDATES, Ensemble(), strategy="disagreement")
    assert source.next(1)[0]["prompt"] == "p2"
