"""Headless `rlhf-lab train CONFIG.yaml`: config checks, one process, and data-parallel RL on 2 ranks."""

import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from rl_toy import ONE_RLOO_STEP
from two_ranks import train_on_two_ranks, why_it_failed

from rlhf_lab.bundled import load_prompts
from rlhf_lab.cli import main
from rlhf_lab.headless import check_config, load_config

REPO = Path(__file__).resolve().parent.parent
TINY_RL = {
    "preset": "tiny",
    "task": "positive_review",
    "seed": 0,
    "rl": {
        "estimator": "ppo",
        "steps": 2,
        "reward": "gold",
        "batch_size": 4,
        "num_minibatches": 2,
        "num_epochs": 1,
        "max_new_tokens": 8,
    },
}


def test_example_config_loads():
    config = load_config(REPO / "examples" / "ppo_tiny.yaml")
    assert config["preset"] == "tiny" and config["rl"]["estimator"] == "ppo"


@pytest.mark.parametrize(
    "bad",
    [
        {"task": "positive_review", "rl": {"reward": "vibes"}},
        {"task": "positive_review", "typo_section": {}},
        {"preset": "tiny"},
        {"task": "positive_review", "preset": "tiny", "policy": "gpt2"},
        {"task": "positive_review", "sft": [1, 2]},
    ],
)
def test_bad_configs_are_rejected(bad):
    with pytest.raises(ValueError):
        check_config(bad)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"rl": {"betta": 0.1}}, r"rl: Unknown RLConfig field\(s\) \['betta'\]"),
        ({"rl": {"beta": -1}}, r"rl: RLConfig.beta must be in \[0, inf\)"),
        ({"rl": {"estimator": "ppoo"}}, "rl: estimator must be one of"),
        ({"rl": {"steps": 2.5}}, r"rl.steps must be a whole number of at least 0, got 2.5"),
        ({"sft": {"learning_rate": "fast"}}, "sft: SFTConfig.learning_rate must be"),
        ({"sft": {"steps": True}}, "sft.steps must be a whole number"),
        ({"dpo": {"loss_type": "sigmod"}}, "dpo: loss_type must be one of"),
        ({"reward_model": {"batch_size": 0}}, r"reward_model: RMConfig.batch_size must be in \[1, inf\)"),
        ({"reward_model": {"epochs": -1}}, "reward_model.epochs must be a whole number"),
        # 0 epochs would fail only at fit(), after SFT and DPO had trained
        ({"reward_model": {"epochs": 0}}, r"reward_model.epochs must be a whole number of at least 1, got 0"),
    ],
)
def test_every_stage_setting_is_checked_before_anything_trains(section, message):
    with pytest.raises(ValueError, match=message):
        check_config({"task": "positive_review", **section})


def test_an_unknown_task_is_named_with_the_bundled_ones():
    with pytest.raises(
        ValueError, match="task: unknown task 'poems'; bundled tasks: helpful_harmless, positive_review"
    ):
        check_config({"task": "poems", "rl": {"steps": 1}})


@pytest.mark.parametrize("name", ["ppo_tiny.yaml", "grpo_tiny.yaml", "flywheel_tiny.yaml"])
def test_the_example_configs_pass_the_checks(name):
    assert load_config(REPO / "examples" / name)["task"]


def test_a_typo_in_rl_fails_before_sft_trains(tmp_path, monkeypatch):
    from rlhf_lab.headless import train
    from rlhf_lab.lab import Lab

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the config was checked")

    monkeypatch.setattr(Lab, "from_preset", no_model)
    config = {"preset": "tiny", "task": "positive_review", "sft": {"steps": 50}, "rl": {"bta": 0.1}}
    with pytest.raises(ValueError, match="rl: Unknown RLConfig field"):
        train({**config, "output_dir": str(tmp_path / "run")})
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_train_command_one_process(tmp_path, capsys):
    config = dict(TINY_RL, sft={"steps": 2, "batch_size": 4}, output_dir=str(tmp_path / "run"))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["world_size"] == 1 and summary["rl"]["steps"] == 2
    for folder in ("sft", "rl"):
        assert (tmp_path / "run" / folder / "stage.json").is_file()
    assert json.loads((tmp_path / "run" / "summary.json").read_text()) == summary


def test_a_config_exported_from_a_notebook_stage_runs(tmp_path, capsys, tiny_lab):
    from rlhf_lab.stages.base import config_to_dict

    sft = tiny_lab.sft([{"prompt": "Say hi.", "response": "Hi!"}] * 4, batch_size=4)
    exported = {k: v for k, v in config_to_dict(sft.config).items() if v is not None}
    config = dict(TINY_RL, sft={**exported, "steps": 1}, output_dir=str(tmp_path / "run"))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0  # the exported section carries its own seed
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["sft"]["steps"] == 1


def test_ranks_answer_their_share_of_the_held_out_prompts_and_all_get_every_answer(monkeypatch):
    import torch.distributed as dist

    from rlhf_lab.headless_eval import held_out_answers

    class Policy:  # each answer names its prompt, so their order shows
        def __init__(self):
            self.asked = []

        def generate(self, prompts, seed, **_):
            self.asked.append(list(prompts))
            return [f"answer to {prompt} ({seed})" for prompt in prompts]

    prompts, alone = held_out_answers(Policy(), "positive_review", samples=2, seed=5)
    for rank in range(3):
        policy = Policy()

        def all_gather_object(out, own, rank=rank, policy=policy):  # what 3 ranks would send each other
            assert own == policy.generate(prompts[rank::3], seed=5)
            out[:] = [Policy().generate(prompts[r::3], seed=5) for r in range(3)]

        monkeypatch.setattr(dist, "all_gather_object", all_gather_object)
        shared = held_out_answers(policy, "positive_review", samples=2, seed=5, rank=rank, world=3)
        assert shared == (prompts, alone)  # every answer, in prompt order
        assert policy.asked[0] == prompts[rank::3]  # it generated only its third


@pytest.mark.slow
def test_two_ranks_end_with_identical_weights(tmp_path):
    """accelerate launch, 2 CPU processes (gloo): gradients averaged, so the weights match bit for bit."""
    path = tmp_path / "c.yaml"
    config = dict(TINY_RL, output_dir=str(tmp_path / "run"), evaluate={"samples": 1})
    path.write_text(yaml.safe_dump(config))
    done = train_on_two_ranks(path, tmp_path)
    assert done.returncode == 0, why_it_failed(done)
    ranks = [json.loads((tmp_path / "run" / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["param_sha256"] == ranks[1]["param_sha256"]
    assert ranks[0]["scores_first"] != ranks[1]["scores_first"]  # each rank trained on its own rollouts
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["world_size"] == 2 and summary["param_sha256"] == ranks[0]["param_sha256"]
    test_prompts = len(load_prompts("positive_review", "test"))  # answered half by each rank, all judged
    assert summary["evaluation"]["answers"] == summary["evaluation"]["test_prompts"] == test_prompts
    assert (tmp_path / "run" / "rl" / "stage.json").is_file()


@pytest.mark.slow
def test_train_with_a_reward_model_fitted_on_the_bundled_preferences(tmp_path, capsys):
    rl = dict(TINY_RL["rl"], estimator="rloo", reward="rm", steps=1, batch_size=2)
    config = dict(TINY_RL, rl=rl, reward_model={"epochs": 1}, output_dir=str(tmp_path / "run"))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["rl"]["reward"] == "rm" and summary["reward_model"]["n_train_pairs"] > 0
    assert (tmp_path / "run" / "reward_model" / "stage.json").is_file()


def _user_files(folder):
    """Demonstrations (JSONL), prompts (Parquet) and preference pairs (JSONL) of one's own."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    demos = [{"prompt": f"Greet guest {i}.", "response": "Welcome, lovely to see you!"} for i in range(6)]
    (folder / "demos.jsonl").write_text("\n".join(json.dumps(d) for d in demos) + "\n")
    pd.DataFrame({"prompt": [f"Greet guest {i}." for i in range(6)]}).to_parquet(folder / "prompts.parquet")
    prefs = [
        {"prompt": f"Greet guest {i}.", "chosen": "Welcome, lovely to see you!", "rejected": "Go away."}
        for i in range(12)
    ]
    (folder / "prefs.jsonl").write_text("\n".join(json.dumps(p) for p in prefs) + "\n")
    return folder


def test_zero_steps_build_and_save_the_stages_without_training(tmp_path, capsys):
    # A section with steps: 0 used to end in an IndexError while summarising (rows[0] of no rows).
    config = dict(TINY_RL, sft={"steps": 0}, output_dir=str(tmp_path / "run"), export=False)
    config["rl"] = {**config["rl"], "steps": 0}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["sft"] == {"steps": 0, "loss_first": None, "loss_last": None}
    assert summary["rl"]["steps"] == 0 and summary["rl"]["scores_first"] is None
    assert (tmp_path / "run" / "rl" / "stage.json").is_file()


def test_headless_run_on_user_files_logs_and_exports(tmp_path, capsys, monkeypatch):
    data = _user_files(tmp_path / "data")
    config = {
        "preset": "tiny",
        "demonstrations": "data/demos.jsonl",  # relative to the config's folder, run from another one
        "prompts": "data/prompts.parquet",
        "preferences": "data/prefs.jsonl",
        "output_dir": str(tmp_path / "run"),
        "sft": {"steps": 1, "batch_size": 2},
        "reward_model": {"epochs": 1, "batch_size": 4},
        "rl": {**ONE_RLOO_STEP, "reward": "rm"},
        "log_to": "tensorboard" if importlib.util.find_spec("tensorboard") else None,
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["train", str(path), "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["task"] is None and summary["data"]["prompts"].endswith("prompts.parquet")
    ran = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())  # runs again from anywhere
    assert ran["demonstrations"] == str(data / "demos.jsonl") and ran["preferences"] == str(
        data / "prefs.jsonl"
    )
    assert summary["rl"]["steps"] == 1 and summary["reward_model"]["n_train_pairs"] > 0
    export = tmp_path / "run" / "export"
    assert summary["exports"] == {
        "reward_model": str(export / "reward_model"),
        "policy": str(export / "policy"),
    }
    for folder in ("policy", "reward_model"):
        assert (export / folder / "model.safetensors").is_file() and (export / folder / "README.md").is_file()
    if config["log_to"]:
        assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_bad_user_files_fail_before_training_and_name_the_row(tmp_path):
    from rlhf_lab.headless import train

    data = _user_files(tmp_path / "data")
    (data / "prefs.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "p"}\n')
    config = {
        "preset": "tiny",
        "preferences": str(data / "prefs.jsonl"),
        "dpo": {"steps": 1},
        "output_dir": str(tmp_path / "run"),
    }
    with pytest.raises(ValueError, match="row 2"):
        train(config)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="rl needs prompts"):
        check_config({"preset": "tiny", "preferences": "p.jsonl", "rl": {"reward": "rm"}})
    with pytest.raises(ValueError, match="gold needs a bundled task"):
        check_config({"prompts": "p.jsonl", "rl": {"reward": "gold"}})
    with pytest.raises(ValueError, match="unknown tracker"):
        check_config({"task": "positive_review", "log_to": "mlflow"})


def test_data_paths_are_read_from_the_configs_folder(tmp_path, monkeypatch):
    from rlhf_lab.headless_config import load_user_data

    (tmp_path / "exp" / "data").mkdir(parents=True)
    (tmp_path / "exp" / "data" / "prefs.jsonl").write_text(
        '{"prompt": "p", "chosen": "a", "rejected": "b"}\n'
    )
    (tmp_path / "old.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    (tmp_path / "anywhere.jsonl").write_text('{"prompt": "p", "response": "r"}\n')
    config = {
        "task": "positive_review",
        "preferences": "data/prefs.jsonl",
        "demonstrations": str(tmp_path / "anywhere.jsonl"),  # absolute: as written
        "output_dir": "runs/x",  # outputs and model folders: relative to where the command runs
        "rl": {"reward": {"mine": {"preferences": "old.jsonl"}, "task": {}}},
    }
    path = tmp_path / "exp" / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)  # old.jsonl is here, not beside the config: found, with a warning
    with pytest.warns(FutureWarning, match=r"rl.reward.mine.preferences: old.jsonl is not beside the config"):
        loaded = load_config(path)
    assert loaded["preferences"] == str(tmp_path / "exp" / "data" / "prefs.jsonl")
    assert loaded["demonstrations"] == str(tmp_path / "anywhere.jsonl") and loaded["output_dir"] == "runs/x"
    assert loaded["rl"]["reward"] == {"mine": {"preferences": str(tmp_path / "old.jsonl")}, "task": {}}
    monkeypatch.chdir(tmp_path / "exp")  # neither beside the config nor here: the error names the former
    with pytest.raises(ValueError, match=f"{tmp_path / 'exp' / 'old.jsonl'}: no such file"):
        load_user_data(load_config(path))


def test_trackers_are_closed_when_a_stage_raises(tmp_path, monkeypatch):
    import rlhf_lab.tracking
    from rlhf_lab.headless import train
    from rlhf_lab.stages.sft import SFTStage

    finished = []

    def fake_log_to(stages, backend, **options):
        return rlhf_lab.tracking.Tracker(
            backend, write=lambda *a: None, finish=lambda: finished.append(backend)
        )

    def failing_step(self, *args, **kwargs):
        raise RuntimeError("the SFT step failed on purpose")

    monkeypatch.setattr(rlhf_lab.tracking, "log_to", fake_log_to)
    monkeypatch.setattr(SFTStage, "step", failing_step)
    config = {
        "preset": "tiny",
        "task": "positive_review",
        "output_dir": str(tmp_path / "run"),
        "sft": {"steps": 1, "batch_size": 2},
        "log_to": "tensorboard",
    }
    with pytest.raises(RuntimeError, match="on purpose"):
        train(config)
    assert finished == ["tensorboard"]  # flushed and finished although the run raised
