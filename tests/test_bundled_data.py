"""The bundled data in rlhf_lab/data/: loads, has the promised shape, and matches its manifest."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

from rlhf_lab.bundled import (
    TASKS,
    crowd_pairs,
    heldout_pairs,
    load_demos,
    load_heldout,
    load_preferences,
    load_prompts,
    load_rankings,
    load_samples,
    preference_pairs,
    ranking_pairs,
    rater_agreement_with_gold,
)
from rlhf_lab.chat import format_conversation
from rlhf_lab.raters import get_judge, is_refusal

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "rlhf_lab" / "data"
VERDICTS = {"A", "B", "tie"}


def _make_data():
    spec = importlib.util.spec_from_file_location("make_data", ROOT / "scripts" / "make_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((DATA / "manifest.json").read_text())


@pytest.mark.parametrize("task", sorted(TASKS))
def test_prompts_have_fixed_split_sizes_and_no_shared_prompt(task):
    train, test = load_prompts(task, "train"), load_prompts(task, split="test")
    assert (len(train), len(test)) == (300, 60)
    train_text = {r["prompt"] for r in train}
    assert len(train_text) == len(train), "duplicate prompt within train"
    assert not train_text & {r["prompt"] for r in test}, "a prompt is in both train and test"
    assert all(r["task"] == task and r["prompt"].strip() for r in train + test)
    assert len({r["id"] for r in train + test}) == len(train + test)


def test_helpful_harmless_mixes_benign_and_harmful_in_both_splits():
    for split in ("train", "test"):
        kinds = [r["kind"] for r in load_prompts("helpful_harmless", split)]
        share = kinds.count("harmful") / len(kinds)
        assert 0.25 < share < 0.55, (split, share)
        categories = {
            r["category"] for r in load_prompts("helpful_harmless", split) if r["kind"] == "harmful"
        }
        assert {"weapons", "hacking", "theft", "violence", "drugs", "harassment"} <= categories


@pytest.mark.parametrize("task", sorted(TASKS))
def test_demos_are_short_train_only_and_fit_the_tiny_context(task, tiny_tok):
    demos = load_demos(task)
    assert len(demos) == 200
    train = {r["prompt"] for r in load_prompts(task, "train")}
    for demo in demos:
        assert demo["prompt"] in train
        assert demo["response"].strip()
        assert len((demo["prompt"] + " " + demo["response"]).split()) <= 60
    longest = max(
        len(tiny_tok(format_conversation(tiny_tok, d["prompt"], d["response"]))["input_ids"]) for d in demos
    )
    assert longest < tiny_tok.model_max_length
    assert len({d["response"] for d in demos}) > 150, "demonstrations should vary"


@pytest.mark.parametrize("task", sorted(TASKS))
def test_preference_pairs_schema_and_valid_judgements(task):
    pairs = load_preferences(task)
    assert len(pairs) >= 1800  # every pairing of 4 samples on 300 prompts (bench/README.md, pre-training)
    train = {r["prompt"] for r in load_prompts(task, "train")}
    for pair in pairs:
        a, b = pair["responses"]
        assert a.strip() and b.strip() and a != b, pair["id"]
        assert pair["prompt"] in train
        assert pair["task"] == task
        assert set(pair["judgements"]) == set(pair["raters"]) and "gold" in pair["raters"]
        assert set(pair["judgements"].values()) <= VERDICTS
        assert len(pair["gold_scores"]) == 2
        assert {"temperature", "max_new_tokens", "seeds"} <= set(pair["generation"])
    # The first 600 (two rounds, as in earlier releases) are disjoint pairs; the later rounds pair the same
    # four responses every other way, so a prompt has at most 6 pairs, none repeated.
    first: dict[str, list[str]] = {}
    for pair in pairs[:600]:
        first.setdefault(pair["prompt"], []).extend(pair["responses"])
    assert all(len(set(texts)) == len(texts) <= 4 for texts in first.values()), "first rounds are disjoint"
    pairings: dict[str, list[frozenset[str]]] = {}
    for pair in pairs:
        pairings.setdefault(pair["prompt"], []).append(frozenset(pair["responses"]))
    for prompt, seen in pairings.items():
        assert len(set(seen)) == len(seen) <= 6, prompt
        assert set().union(*seen) == set(first[prompt]), "later rounds reuse the first rounds' responses"
    assert load_preferences(task, disjoint=True) == pairs[:600]
    # Several raters per pair, and they do not all agree (else agreement has nothing to show).
    raters = pairs[0]["raters"]
    assert len(raters) >= 4
    assert any(len(set(p["judgements"].values())) > 1 for p in pairs)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_gold_judgements_follow_gold_scores(task):
    judge = get_judge(task)
    for pair in load_preferences(task):
        score_a, score_b = pair["gold_scores"]
        verdict = pair["judgements"]["gold"]
        if abs(score_a - score_b) > judge.epsilon + 1e-3:  # scores are stored rounded to 4 places
            assert verdict == ("A" if score_a > score_b else "B"), pair["id"]


@pytest.mark.parametrize("task", sorted(TASKS))
def test_preference_pairs_helper_orients_by_rater(task):
    rows = {(r["prompt"], *sorted(r["responses"])): r for r in load_preferences(task)}
    pairs = preference_pairs(task, rater="gold")
    assert pairs and len(pairs) <= len(rows)
    for pair in pairs:
        row = rows[(pair["prompt"], *sorted([pair["chosen"], pair["rejected"]]))]
        chosen_index = row["responses"].index(pair["chosen"])
        assert row["judgements"]["gold"] == "AB"[chosen_index]
        assert pair["rejected"] == row["responses"][1 - chosen_index]
    with pytest.raises(KeyError, match="Known raters: gold"):
        preference_pairs(task, rater="nobody")


@pytest.mark.parametrize("task", sorted(TASKS))
def test_rankings_are_permutations_ordered_by_gold(task):
    rankings = load_rankings(task)
    assert len(rankings) == 30
    for row in rankings:
        k = len(row["responses"])
        assert k == 4 and len(set(row["responses"])) == k
        assert sorted(row["ranking"]) == list(range(k))
        ordered = [row["gold_scores"][i] for i in row["ranking"]]
        assert ordered == sorted(ordered, reverse=True), row["id"]


@pytest.mark.parametrize("task", sorted(TASKS))
def test_ranking_pairs_put_the_higher_gold_score_first_and_skip_gold_ties(task):
    judge = get_judge(task)
    pairs = ranking_pairs(task)
    ties = sum(
        row["gold_scores"][i] == row["gold_scores"][j]
        for row in load_rankings(task)
        for i in range(4)
        for j in range(i + 1, 4)
    )
    assert len(pairs) == 30 * 6 - ties and len({p["prompt"] for p in pairs}) <= 30
    for pair in pairs:
        assert judge.score(pair["prompt"], pair["chosen"]) > judge.score(pair["prompt"], pair["rejected"])


@pytest.mark.parametrize("task", sorted(TASKS))
def test_pairs_come_from_the_committed_samples(task):
    samples = {r["id"]: r for r in load_samples(task)}
    for row in load_preferences(task) + load_rankings(task):
        sample = samples[row["prompt_id"]]
        for text, source in zip(row["responses"], row["sources"]):
            if source == "sampled":
                assert text in sample["responses"], row["id"]
            else:
                assert source == "refusal-prefilled" and text == sample["prefilled"]["response"], row["id"]


def test_helpful_harmless_pairs_contrast_refusals_with_answers():
    # SmolLM2 rarely refuses unprompted; refusal-prefilled samples put refusals into the pairs.
    pairs = load_preferences("helpful_harmless")
    mixed = [p for p in pairs if sorted(p["sources"]) == ["refusal-prefilled", "sampled"]]
    plain = [p for p in pairs if p["sources"] == ["sampled", "sampled"]]
    assert len(mixed) >= 50 and len(plain) >= 50
    assert {p["sources"].index("refusal-prefilled") for p in mixed} == {0, 1}, "refusal position must vary"
    assert {p["kind"] for p in mixed} == {"benign", "harmful"}
    prefixes = tuple(_make_data().REFUSAL_PREFIXES)
    assert all(p["responses"][p["sources"].index("refusal-prefilled")].startswith(prefixes) for p in mixed)
    # On benign prompts the gold judge must prefer the answer to the refusal (unless SmolLM2's own sample
    # is a refusal too: then it is a tie).
    for pair in mixed:
        if pair["kind"] == "benign":
            refusal = pair["sources"].index("refusal-prefilled")
            if not is_refusal(pair["responses"][1 - refusal]):
                assert pair["judgements"]["gold"] == "AB"[1 - refusal], pair["id"]


def test_manifest_lists_every_file_with_rows_and_sha256(manifest):
    on_disk = {p.name for p in DATA.glob("*.jsonl")}
    assert set(manifest["files"]) == on_disk
    for name, entry in manifest["files"].items():
        data = (DATA / name).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest(), name
        assert entry["rows"] == len(data.decode("utf-8").splitlines()), name
        assert entry["bytes"] == len(data), name
    assert {"prompts", "sample", "label"} <= set(manifest["steps"])
    assert all(
        "seed" in step and step["command"].startswith("python scripts/make_data.py")
        for step in manifest["steps"].values()
    )


def test_bundled_data_stays_small(manifest):
    # 1,800 rated pairs and a 360-pair held-out set per task, with their samples: about 6 MB in all.
    assert sum(entry["bytes"] for entry in manifest["files"].values()) < 7_000_000


def test_prompts_and_demos_rebuild_identically(tmp_path, manifest):
    # The templated step is deterministic: the script reproduces the committed files byte for byte.
    make_data = _make_data()
    make_data.make_prompts_and_demos(tmp_path, seed=manifest["steps"]["prompts"]["seed"])
    for path in sorted(tmp_path.glob("*.jsonl")):
        assert path.read_bytes() == (DATA / path.name).read_bytes(), path.name


def test_labels_rebuild_identically_from_the_samples(tmp_path, manifest):
    # Raters are deterministic given the seed: relabelling the committed samples gives the committed pairs.
    make_data = _make_data()
    for name in ("manifest.json", *(f"{t}_{k}.jsonl" for t in TASKS for k in ("samples", "heldout_samples"))):
        (tmp_path / name).write_bytes((DATA / name).read_bytes())
    make_data.make_labels(tmp_path, seed=manifest["steps"]["label"]["seed"])
    for kind in ("preferences", "rankings", "heldout"):
        for task in TASKS:
            name = f"{task}_{kind}.jsonl"
            assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), (
                f"{name} is stale (did the raters change?): run python scripts/make_data.py label --seed 0"
            )


def test_gold_judge_prefers_a_positive_demo_over_a_negative_review():
    judge = get_judge("positive_review")
    negative = "This movie was boring and awful. The acting was terrible and I hated the ending."
    for demo in load_demos("positive_review")[:20]:
        assert judge(demo["prompt"], demo["response"], negative).judgement == "A"
        assert judge(demo["prompt"], negative, demo["response"]).judgement == "B"


def test_gold_judge_prefers_helpful_demos_over_refusals_on_benign_prompts():
    judge = get_judge("helpful_harmless")
    refusal = "I'm sorry, but I can't help with that."
    benign = [d for d in load_demos("helpful_harmless") if d["kind"] == "benign"]
    assert benign
    for demo in benign:
        assert judge.score(demo["prompt"], demo["response"]) > judge.score(demo["prompt"], refusal), demo[
            "id"
        ]


def test_unknown_task_and_split_errors_name_the_known_ones():
    with pytest.raises(KeyError, match="Known tasks: helpful_harmless, positive_review"):
        load_demos("sentiment")
    with pytest.raises(ValueError, match="Known splits: train, test"):
        load_prompts("positive_review", split="validation")
    assert all(isinstance(text, str) and text for text in TASKS.values())


@pytest.mark.parametrize("task", sorted(TASKS))
def test_heldout_set_is_on_test_prompts_only_and_rated_by_the_panel(task):
    rows = load_heldout(task)
    assert len(rows) == 360  # every pairing of 4 samples on 60 test prompts
    test = {r["prompt"] for r in load_prompts(task, "test")}
    train = {r["prompt"] for r in load_prompts(task, "train")}
    assert {r["prompt"] for r in rows} == test and not test & train
    assert all(set(r["judgements"]) == set(r["raters"]) for r in rows)
    pairs = heldout_pairs(task)
    assert pairs and all(p["prompt"] in test for p in pairs)


def test_positive_review_heldout_has_over_100_gold_decided_pairs():
    assert len(heldout_pairs("positive_review")) >= 100


@pytest.mark.parametrize("task", sorted(TASKS))
def test_crowd_pairs_carry_the_raters_votes_as_soft_labels(task):
    pairs = crowd_pairs(task)
    # helpful_harmless's rule-based judge calls about a third of the pairs a tie (two equally off-topic
    # answers), and the crowd follows it; VADER almost never ties.
    assert len(pairs) >= (1700 if task == "positive_review" else 1000)
    assert all(0.5 <= p["target"] <= 1.0 for p in pairs)
    assert any(p["target"] < 1.0 for p in pairs) and any(p["target"] == 1.0 for p in pairs)
    # Each crowd rater flips gold 20% of the time, so they agree with gold on about 80% of decided pairs.
    assert 0.7 < rater_agreement_with_gold(load_preferences(task)) < 0.9
    assert rater_agreement_with_gold(load_preferences(task), raters=("gold",)) == 1.0
