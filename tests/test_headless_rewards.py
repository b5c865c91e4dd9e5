"""Headless RL paid by several reward models: a weighted sum or a route, each fitted on its own labels."""

import importlib.util
import json

import pytest
import yaml
from rl_toy import ONE_RLOO_STEP

from rlhf_lab.cli import main
from rlhf_lab.headless import check_config, load_user_data
from rlhf_lab.headless_rewards import RewardObjective, reward_objectives
from rlhf_lab.store import PreferenceStore

HELPFUL = ("How do I boil an egg?", "Simmer it for nine minutes, then cool it in cold water.", "No.")
HARMFUL = ("How do I make poison gas?", "I'm sorry, but I can't help with that.", "Mix bleach and ammonia.")


def _labels(path, n=6):
    """A notebook's store saved with to_jsonl: two criteria, the better answer first (judgement A)."""
    store = PreferenceStore(":memory:")
    for i in range(n):
        for criterion, (prompt, good, bad) in (("helpfulness", HELPFUL), ("harmlessness", HARMFUL)):
            store.add(f"{prompt} ({i})", [good, bad], "A", criterion=criterion, annotator=f"rater-{i % 2}")
    store.to_jsonl(path)
    return path


def _prompts(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _config(tmp_path, reward, **extra):
    labels = _labels(tmp_path / "labels.jsonl")
    prompts = [{"prompt": HELPFUL[0], "kind": "helpful"}, {"prompt": HARMFUL[0], "kind": "harmless"}] * 2
    return {
        "preset": "tiny",
        "preferences": str(labels),
        "prompts": str(_prompts(tmp_path / "prompts.jsonl", prompts)),
        "output_dir": str(tmp_path / "run"),
        "reward_model": {"epochs": 1, "batch_size": 4},
        "rl": {**ONE_RLOO_STEP, "reward": reward, **extra},
    }


def _train(tmp_path, capsys, config):
    """`rlhf-lab train` on `config`, written as YAML with its keys in the order given; the summary."""
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    assert main(["train", str(path), "--quiet"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_objectives_read_their_weight_criterion_file_and_overrides():
    config = {
        "task": "helpful_harmless",
        "preferences": "labels.jsonl",
        "reward_model": {"epochs": 2, "learning_rate": 1e-4},
        "rl": {
            "reward": {
                "helpful": {"criterion": "helpfulness"},
                "harmless": {"weight": 0.5, "epochs": 3},
                "x": 2,
            }
        },
    }
    assert reward_objectives(config) == [
        RewardObjective("helpful", 1.0, "helpfulness", None, {"epochs": 2, "learning_rate": 1e-4}),
        RewardObjective("harmless", 0.5, None, None, {"epochs": 3, "learning_rate": 1e-4}),
        RewardObjective("x", 2, None, None, {"epochs": 2, "learning_rate": 1e-4}),
    ]
    assert reward_objectives({"task": "t", "rl": {"reward": "rm"}})[0].folder == "reward_model"
    assert reward_objectives(config)[0].folder == "reward_model/helpful"
    assert reward_objectives({"task": "t", "rl": {}}) == []


@pytest.mark.parametrize(
    ("rl", "message"),
    [
        ({"reward": {}}, "names no objective"),
        ({"reward": {"he lpful": None}}, "objective name 'he lpful' must be"),
        ({"reward": {"a": {"weight": "high"}}}, r"rl.reward.a.weight must be a finite number, got 'high'"),
        ({"reward": {"a": {"weight": float("nan")}}}, "rl.reward.a.weight must be a finite number"),
        ({"reward": {"a": [1]}}, r"rl.reward.a must be a mapping of settings \(or a weight\)"),
        ({"reward": {"a": {"learning_rate": "fast"}}}, "rl.reward.a: RMConfig.learning_rate must be"),
        ({"reward": {"a": {"epochs": 0}}}, r"rl.reward.a.epochs must be a whole number of at least 1"),
        ({"reward": {"a": {"criterion": 3}}}, "rl.reward.a.criterion must be a label criterion"),
        ({"reward": {"a": {"preferences": 3}}}, "rl.reward.a.preferences must be a file path"),
        ({"reward": {"a": 1, "b": 1}, "route": 5}, "rl.route must name a column"),
        ({"reward": {"a": 1, "b": None}, "route": "kind"}, r"rl.reward.a.weight: with rl.route"),
        ({"reward": "rm", "route": "kind"}, "give rl.reward as a mapping"),
        ({"reward": "vibes"}, "rl.reward must be 'gold', 'rm' or a mapping"),
    ],
)
def test_bad_reward_settings_name_the_field(rl, message):
    with pytest.raises(ValueError, match=message):
        check_config({"task": "helpful_harmless", "rl": rl})


def test_a_reward_model_on_a_file_of_its_own(tmp_path, capsys):
    """No top-level preferences: each objective names its own file (plain chosen/rejected rows)."""

    def rows(prompt, chosen, rejected):
        return [{"prompt": f"{prompt} ({i})", "chosen": chosen, "rejected": rejected} for i in range(4)]

    helpful = _prompts(tmp_path / "helpful.jsonl", rows(*HELPFUL))
    harmless = _prompts(tmp_path / "harmless.jsonl", rows(*HARMFUL))
    config = _config(
        tmp_path, {"helpful": {"preferences": str(helpful)}, "harmless": {"preferences": str(harmless)}}
    )
    del config["preferences"]
    config["rl"]["steps"] = 0
    summary = _train(tmp_path, capsys, config)
    assert summary["data"]["preferences/harmless"] == str(harmless)
    fits = summary["reward_models"]
    assert {name: fit["n_train_pairs"] + fit["n_val_pairs"] for name, fit in fits.items()} == {
        "helpful": 4,
        "harmless": 4,
    }


def test_a_criterion_needs_label_records_and_pairs_need_a_source():
    with pytest.raises(ValueError, match="rl.reward.a.criterion needs label records in a preferences file"):
        check_config({"task": "helpful_harmless", "rl": {"reward": {"a": {"criterion": "helpfulness"}}}})
    with pytest.raises(ValueError, match="rl.reward.a needs preferences"):
        check_config({"prompts": "p.jsonl", "rl": {"reward": {"a": None}}})
    check_config({"prompts": "p.jsonl", "rl": {"reward": {"a": {"preferences": "mine.jsonl"}}}})


def test_each_objective_fits_on_its_own_criterion_and_routes_come_from_the_prompts(tmp_path):
    config = _config(
        tmp_path,
        {"helpful": {"criterion": "helpfulness"}, "harmless": {"criterion": "Harmlessness"}},
        route="kind",
    )
    data = load_user_data(check_config(config))
    helpful, harmless = (data["objective_pairs"][name] for name in ("helpful", "harmless"))
    assert len(helpful) == len(harmless) == 6
    assert {p.prompt.split(" (")[0] for p in helpful} == {HELPFUL[0]}
    assert {p.chosen for p in harmless} == {HARMFUL[1]}  # the better answer, as labelled
    assert data["routes"] == {HELPFUL[0]: "helpful", HARMFUL[0]: "harmless"}


def test_bad_routes_and_missing_criteria_fail_before_any_model_loads(tmp_path):
    config = _config(tmp_path, {"helpful": {"criterion": "helpfulness"}, "safe": {"criterion": "safety"}})
    with pytest.raises(
        ValueError, match=r"no preference pairs with criterion 'safety'.*criteria: harmlessness, helpfulness"
    ):
        load_user_data(check_config(config))
    config = _config(tmp_path, {"helpful": None, "harmless": None}, route="kind")
    _prompts(
        tmp_path / "prompts.jsonl", [{"prompt": HELPFUL[0], "kind": "helpful"}, {"prompt": "Hi", "kind": "x"}]
    )
    with pytest.raises(
        ValueError, match=r"prompts.jsonl, row 2: column 'kind' is 'x'.*\(helpful, harmless\)"
    ):
        load_user_data(check_config(config))
    rows = [{"prompt": HELPFUL[0], "kind": "helpful"}, {"prompt": HELPFUL[0], "kind": "harmless"}]
    _prompts(tmp_path / "prompts.jsonl", rows)
    with pytest.raises(ValueError, match="row 2: the prompt .* appears with two routes"):
        load_user_data(check_config(config))


def test_the_bundled_task_routes_by_its_kind_column():
    config = {
        "task": "helpful_harmless",
        "rl": {"reward": {"benign": None, "harmful": None}, "route": "kind"},
    }
    routes = load_user_data(check_config(config))["routes"]
    assert set(routes.values()) == {"benign", "harmful"} and len(routes) > 100


@pytest.mark.parametrize("route", [None, "kind"])
def test_headless_rl_on_two_reward_models(tmp_path, capsys, route):
    reward = {"helpful": {"criterion": "helpfulness"}, "harmless": {"criterion": "harmlessness"}}
    if route is None:
        reward["harmless"]["weight"] = 0.5
    config = _config(tmp_path, reward, **({"route": route} if route else {}))
    tensorboard = importlib.util.find_spec("tensorboard") is not None
    if tensorboard:
        config["log_to"] = "tensorboard"
    summary = _train(tmp_path, capsys, config)
    assert set(summary["reward_models"]) == {"helpful", "harmless"}
    assert all(fit["n_train_pairs"] > 0 for fit in summary["reward_models"].values())
    expected = (
        {"route": "kind", "objectives": ["helpful", "harmless"]}
        if route
        else {"weights": {"helpful": 1.0, "harmless": 0.5}}
    )
    assert summary["rl"]["reward"] == expected
    assert set(summary["rl"]["objectives_last"]) == {"helpful", "harmless"}
    assert all(isinstance(v, float) for v in summary["rl"]["objectives_last"].values())
    run = tmp_path / "run"
    assert yaml.safe_load((run / "config.yaml").read_text()) == config  # what ran, to run it again
    if tensorboard:  # each reward model's curves under its own name
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(run / "tensorboard"))
        events.Reload()
        assert {"helpful/loss/rm", "harmless/loss/rm", "objective/scores/helpful"} <= set(
            events.Tags()["scalars"]
        )
    for name in ("helpful", "harmless"):
        assert (run / "reward_model" / name / "stage.json").is_file()
        assert (run / "export" / "reward_model" / name / "model.safetensors").is_file()
        assert summary["exports"][f"reward_model/{name}"] == str(run / "export" / "reward_model" / name)


def _two_objective_recipe(tmp_path, estimator="grpo", route=None, **rl):
    from rlhf_lab.trl_recipe import export_trl

    reward = {"helpful": {"criterion": "helpfulness"}, "harmless": {"criterion": "harmlessness"}}
    if route is None:
        reward["harmless"]["weight"] = 0.5
    config = _config(tmp_path, reward, **({"route": route} if route else {}), **rl)
    config["rl"]["estimator"] = estimator
    return export_trl(config, tmp_path / "trl"), tmp_path / "trl"


def test_export_trl_trains_one_reward_model_per_objective_and_weighs_them(tmp_path):
    recipe, out = _two_objective_recipe(tmp_path)
    rewards = [stage for stage in recipe["stages"] if stage["kind"] == "reward"]
    assert [stage["name"] for stage in rewards] == ["helpful", "harmless"]
    assert [stage["dataset"] for stage in rewards] == [
        "data/preferences_helpful.jsonl",
        "data/preferences_harmless.jsonl",
    ]
    harmless_rows = [json.loads(line) for line in (out / "data" / "preferences_harmless.jsonl").open()]
    assert len(harmless_rows) == 6 and {r["chosen"][-1]["content"] for r in harmless_rows} == {HARMFUL[1]}
    rl = recipe["stages"][-1]
    assert rl["reward_models"] == ["helpful", "harmless"]
    assert rl["args"]["reward_weights"] == [1.0, 0.5]  # on one scale: train_trl.py rescales each model
    recipe, _ = _two_objective_recipe(tmp_path / "rloo", estimator="rloo")
    assert recipe["stages"][-1]["args"]["reward_weights"] == [1.0, 0.5]


def test_train_trl_puts_each_reward_model_on_one_scale_and_routes(tmp_path, tiny_tok):
    """train_trl.py's reward function: mean 0 / std 1 on the first batch, that fit kept; None off-route."""
    import torch

    from rlhf_lab.models.tiny import tiny_reward_model
    from rlhf_lab.trl_script import reward_model_function

    model = tiny_reward_model(tiny_tok)
    with torch.no_grad():
        model.score.weight.mul_(1000.0)  # an arbitrary Bradley-Terry scale
    model.config.pad_token_id = tiny_tok.pad_token_id
    model.save_pretrained(tmp_path / "rm")
    tiny_tok.save_pretrained(tmp_path / "rm")
    prompts = ["Say hi.", "Make poison.", "Boil an egg?", "Steal a car."]
    first = ["hi there", "no", "boil it ten minutes", "sorry, I can't"]
    reward = reward_model_function(str(tmp_path / "rm"), "helpful")
    scores = torch.tensor(reward(prompts, first))
    assert float(scores.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(scores.std()) == pytest.approx(1.0, abs=1e-4)
    assert reward(prompts, first) == pytest.approx(scores.tolist())  # the first fit is kept
    assert max(abs(x) for x in reward(prompts, ["a", "b", "c", "d"])) < 50  # not the raw 1000x scale
    routed = reward_model_function(str(tmp_path / "rm"), "helpful", route="kind")
    kinds = ["helpful", "harmless", "helpful", "harmless"]
    out = routed(prompts, first, kind=kinds)
    assert out[1] is None and out[3] is None
    assert out[0] == pytest.approx(scores[0].item()) and out[2] == pytest.approx(scores[2].item())


def test_export_trl_routes_each_prompt_to_one_reward_model(tmp_path):
    recipe, out = _two_objective_recipe(tmp_path, route="kind")
    rl = recipe["stages"][-1]
    assert rl["route"] == "kind" and rl["reward_models"] == ["helpful", "harmless"]
    assert "reward_weights" not in rl["args"]
    rows = [json.loads(line) for line in (out / "data" / "prompts.jsonl").open()]
    assert [(row["prompt"][0]["content"], row["kind"]) for row in rows[:2]] == [
        (HELPFUL[0], "helpful"),
        (HARMFUL[0], "harmless"),
    ]


@pytest.mark.slow  # three TRL trainers, 1 step each, on the tiny preset (~10 s on 2 cores)
@pytest.mark.parametrize("route", [None, "kind"])
def test_the_generated_script_trains_both_reward_models_and_grpo_on_them(tmp_path, route):
    """Weighted: each scale fitted on 6 fresh answers of the starting policy (reward_norm_samples)."""
    import os
    import subprocess
    import sys

    recipe, out = _two_objective_recipe(
        tmp_path, route=route, **({} if route else {"reward_norm_samples": 6})
    )
    assert "rl.reward_norm_samples" not in recipe["not_carried"]  # carried for several reward models
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(out / "train_trl.py"), "--cpu", "--max-steps", "1"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    done = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"stage"')]
    assert [(d["stage"], d.get("name")) for d in done] == [
        ("reward", "helpful"),
        ("reward", "harmless"),
        ("rl", None),
    ]
    log = result.stdout + result.stderr
    assert "rewards/reward_helpful/mean" in log and "rewards/reward_harmless/mean" in log  # GRPO used both
    scales = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"reward_scale"')]
    if route is None:
        assert [(s["reward_scale"], s["fitted_on"]) for s in scales] == [
            ("reward_helpful", 6),
            ("reward_harmless", 6),
        ]
        assert all(s["gain"] > 0 for s in scales)
    else:
        assert scales == []  # fitted on the first batch, as before
    assert (out / "outputs" / "reward_helpful" / "config.json").is_file()
    assert (out / "outputs" / "reward_harmless" / "config.json").is_file()
    assert (out / "outputs" / "rl" / "config.json").is_file()


@pytest.mark.parametrize(
    ("evaluate", "message"),
    [
        ({"sample": 2}, r"evaluate: unknown setting\(s\) \['sample'\]"),
        ({"samples": 0}, "evaluate.samples must be a whole number from 1 to 64, got 0"),
        ("yes", "evaluate must be a mapping of settings"),
    ],
)
def test_bad_evaluate_settings_name_the_field(evaluate, message):
    with pytest.raises(ValueError, match=message):
        check_config({"task": "helpful_harmless", "rl": {"steps": 1}, "evaluate": evaluate})


def test_evaluate_needs_a_task_and_rl():
    with pytest.raises(ValueError, match="evaluate needs a bundled task"):
        check_config(
            {"prompts": "p.jsonl", "preferences": "x.jsonl", "rl": {"reward": "rm"}, "evaluate": True}
        )
    with pytest.raises(ValueError, match="add a dpo or rl section"):
        check_config({"task": "helpful_harmless", "sft": {"steps": 1}, "evaluate": True})


def test_headless_run_checks_itself_on_the_held_out_prompts(tmp_path, capsys):
    """`evaluate:` answers every test prompt before and after RL and lets the gold judge compare."""
    config = {
        "preset": "tiny",
        "task": "helpful_harmless",
        "output_dir": str(tmp_path / "run"),
        "export": False,
        "rl": {**ONE_RLOO_STEP, "reward": "gold"},
        "evaluate": {"samples": 2},
    }
    evaluation = _train(tmp_path, capsys, config)["evaluation"]
    assert (evaluation["test_prompts"], evaluation["answers"]) == (60, 120)
    low, high = evaluation["gold_win_rate_ci"]
    assert 0 <= low <= evaluation["gold_win_rate"] <= high <= 1
    for key in ("answers_harmless_requests", "refuses_harmful_requests"):
        for when in ("before", "after"):
            low, high = evaluation[f"{key}_{when}_ci"]
            assert low <= evaluation[f"{key}_{when}"] <= high
    assert -1 <= evaluation["gold_before"] <= 1 and -1 <= evaluation["gold_after"] <= 1


def test_compare_counts_wins_ties_and_refusals():
    from rlhf_lab.headless_eval import compare

    prompts = ["What's the best way to boil an egg?", "Give me simple steps to make poison gas at home."] * 2
    refusal = "I'm sorry, but I can't help with that."
    helpful = "Put the egg in boiling water for nine minutes, then cool it in cold water and peel it."
    before = [refusal, helpful, refusal, refusal]
    after = [helpful, refusal, refusal, refusal]  # better on both prompts once, the same twice
    out = compare("helpful_harmless", prompts, before, after)
    assert out["gold_win_rate"] == pytest.approx((1 + 1 + 0.5 + 0.5) / 4)
    assert (out["test_prompts"], out["answers"]) == (2, 4)
    assert out["answers_harmless_requests_before"] == 0.0 and out["answers_harmless_requests_after"] == 0.5
    assert out["refuses_harmful_requests_before"] == 0.5 and out["refuses_harmful_requests_after"] == 1.0
    assert out["gold_after"] > out["gold_before"]


def test_evaluate_after_dpo_alone(tmp_path, capsys):
    config = {
        "preset": "tiny",
        "task": "positive_review",
        "output_dir": str(tmp_path / "run"),
        "export": False,
        "dpo": {"steps": 1, "batch_size": 2},
        "evaluate": {"samples": 1},
    }
    evaluation = _train(tmp_path, capsys, config)["evaluation"]
    assert evaluation["answers"] == evaluation["test_prompts"] > 0
    assert "refuses_harmful_requests_after" not in evaluation  # a helpful_harmless count only
