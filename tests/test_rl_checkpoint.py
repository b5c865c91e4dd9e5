"""save/load continues the same RL run: the next steps' metrics equal an uninterrupted run."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from rl_toy import e_count, make_stage

from rlhf_lab.rl import RLStage

VOLATILE = {"wall_time", "elapsed_s", "time/step_s"}


def assert_same_rows(got, expected):
    assert [r["step"] for r in got] == [r["step"] for r in expected]
    for a, b in zip(got, expected):
        for key, value in b.items():
            if key in VOLATILE:
                continue
            if isinstance(value, float):
                assert a[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
            else:
                assert a[key] == value, key


@pytest.mark.parametrize(
    "estimator, settings",
    [
        ("ppo", {"target_kl": 1.0}),
        ("grpo", {}),
        ("ppo", {"value": "separate"}),
        ("ppo", {"lora": True, "lora_r": 4}),
    ],
    ids=["ppo-adaptive-kl", "grpo", "ppo-separate-value", "ppo-lora"],
)
def test_load_continues_the_same_run(tmp_path, tiny_tok, estimator, settings):
    stage = make_stage(estimator, tok=tiny_tok, **settings)
    stage.step(2)
    stage.save(tmp_path / "ckpt")
    saved_kl = stage.kl_ctl.state_dict()
    expected = stage.step(2)

    resumed = RLStage.load(tmp_path / "ckpt", reward=e_count)
    assert resumed.step_count == 2 and len(resumed.history) == 2
    assert resumed.kl_ctl.state_dict() == saved_kl
    assert len(resumed.samples()) == stage.config.rollouts_per_step and resumed.samples()[0]["step"] == 2
    assert_same_rows(resumed.step(2), expected)
    if settings.get("lora"):
        assert resumed.uses_lora and resumed.ref_policy is None


def test_load_needs_the_reward(tmp_path, tiny_tok):
    stage = make_stage("ppo", tok=tiny_tok)
    stage.save(tmp_path / "ckpt")
    with pytest.raises(Exception, match="reward"):
        RLStage.load(tmp_path / "ckpt")


def test_checkpoint_holds_safetensors_weights(tmp_path, tiny_tok):
    stage = make_stage("ppo", tok=tiny_tok)
    stage.step()
    folder = stage.save(tmp_path / "ckpt")
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {
        "models/policy/model.safetensors",
        "models/reference/model.safetensors",
        "value_head.safetensors",
    } <= names
    assert {"optim.pt", "rl_state.json", "prompts.json", "samples.jsonl", "rng.pt"} <= names
    assert not any(n.endswith(".bin") for n in names)


SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from rl_toy import e_count, make_stage
    from rlhf_lab.rl import RLStage

    mode, path, out = sys.argv[1:4]
    if mode == "train":
        stage = make_stage("ppo", target_kl=1.0)
        stage.step(2)
        stage.save(path)
        rows = stage.step(2)
    else:
        stage = RLStage.load(path, reward=e_count)
        rows = stage.step(2)
    with open(out, "w") as f:
        json.dump(rows, f)
    """
)


@pytest.mark.slow
def test_load_in_a_fresh_process_continues_the_same_run(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent)))
    ckpt = tmp_path / "ckpt"
    for mode in ("train", "resume"):
        subprocess.run(
            [sys.executable, str(script), mode, str(ckpt), str(tmp_path / f"{mode}.json")], check=True
        )
    expected = json.loads((tmp_path / "train.json").read_text())
    got = json.loads((tmp_path / "resume.json").read_text())
    assert_same_rows(got, expected)
