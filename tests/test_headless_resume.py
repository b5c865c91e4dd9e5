"""`rlhf-lab train --resume`: a run that stopped continues from its checkpoints to the same weights."""

import json

import pytest
import yaml
from rl_toy import ONE_RLOO_STEP

from rlhf_lab.cli import main
from rlhf_lab.errors import ConfigError
from rlhf_lab.headless import train
from rlhf_lab.headless_resume import RunProgress, run_steps
from rlhf_lab.rl import RLStage

CONFIG = {
    "preset": "tiny",
    "task": "positive_review",
    "seed": 0,
    "checkpoint_every": 2,
    "sft": {"steps": 2, "batch_size": 2},
    "reward_model": {"steps": 6, "batch_size": 8},
    "rl": {**ONE_RLOO_STEP, "steps": 4, "reward": "rm"},
    "export": False,
}


def _killed_after(monkeypatch, calls):
    """RLStage.step raises on its call number `calls + 1`, as a job killed mid-run would stop."""
    step, seen = RLStage.step, []

    def killed(self, *args, **kwargs):
        seen.append(1)
        if len(seen) > calls:
            raise KeyboardInterrupt("the job was killed")
        return step(self, *args, **kwargs)

    monkeypatch.setattr(RLStage, "step", killed)


def test_a_killed_run_resumes_to_the_weights_of_one_that_never_stopped(tmp_path, monkeypatch):
    whole = train({**CONFIG, "output_dir": str(tmp_path / "whole")})
    assert "resumed" not in whole

    run = {**CONFIG, "output_dir": str(tmp_path / "run")}
    with monkeypatch.context() as patch:
        _killed_after(patch, calls=1)  # RL's first 2 steps are saved, then the job dies
        with pytest.raises(KeyboardInterrupt):
            train(run)
    assert json.loads((tmp_path / "run" / "progress.json").read_text())["saved"] == [
        "sft",
        "reward_model",
        "rl",
    ]
    resumed = train(run, resume=True)
    assert resumed["resumed"] == {"sft": 2, "reward_model": 6, "rl": 2}
    assert resumed["param_sha256"] == whole["param_sha256"]
    assert resumed["rl"]["steps"] == 4 and resumed["rl"]["scores_first"] == whole["rl"]["scores_first"]
    assert resumed["reward_model"]["resumed"] is True


@pytest.mark.parametrize("rl_lora", [False, True], ids=["rl-all-weights", "rl-own-adapter"])
def test_a_run_after_lora_sft_resumes_to_the_same_weights(tmp_path, monkeypatch, rl_lora):
    # RL starts from the SFT adapter folded into the weights, so its checkpoint holds one plain model
    # (plus, with rl.lora, RL's own adapter) that loading rebuilds.
    config = {**CONFIG, "sft": {**CONFIG["sft"], "lora": True}, "rl": {**CONFIG["rl"], "reward": "gold"}}
    config["rl"]["lora"] = rl_lora
    config.pop("reward_model")
    whole = train({**config, "output_dir": str(tmp_path / "whole")})
    run = {**config, "output_dir": str(tmp_path / "run")}
    with monkeypatch.context() as patch:
        _killed_after(patch, calls=1)
        with pytest.raises(KeyboardInterrupt):
            train(run)
    resumed = train(run, resume=True)
    assert resumed["resumed"] == {"sft": 2, "rl": 2}
    assert resumed["param_sha256"] == whole["param_sha256"]


def test_resume_refuses_another_config_and_a_folder_without_a_run(tmp_path):
    config = {**CONFIG, "output_dir": str(tmp_path / "run"), "rl": {**CONFIG["rl"], "steps": 2}}
    train(config)
    longer = {**config, "rl": {**config["rl"], "steps": 4}, "checkpoint_every": 1}  # more steps: allowed
    assert train(longer, resume=True)["resumed"]["rl"] == 2
    with pytest.raises(ConfigError, match=r"differs from the run in .* in rl, seed; resuming would mix"):
        train({**longer, "seed": 1, "rl": {**longer["rl"], "beta": 0.5}}, resume=True)
    with pytest.raises(ConfigError, match="rl.steps is 2, but its checkpoint has taken 4 steps"):
        train(config, resume=True)
    with pytest.raises(ConfigError, match="holds no run to resume"):
        train({**config, "output_dir": str(tmp_path / "empty")}, resume=True)


def test_a_fresh_run_never_resumes_an_older_runs_checkpoints(tmp_path):
    progress = RunProgress(tmp_path, resume=False, writer=True)
    (tmp_path / "sft").mkdir()
    (tmp_path / "sft" / "stage.json").write_text("{}")  # left by an earlier run
    assert progress.saved("sft") is None
    progress.record("sft")
    assert RunProgress(tmp_path, resume=True, writer=False).saved("sft") == tmp_path / "sft"
    assert RunProgress(tmp_path, resume=False, writer=True).saved("sft") is None  # a new run starts over


def _errors_reading_while_written(read, write, times: int) -> list[str]:
    """Call `read` in a loop on another thread while `write` runs `times` times, as another rank reads a
    file that rank 0 writes; the first error `read` raised (any failure to read is the finding), if any."""
    import threading

    errors, done = [], threading.Event()

    def keep_reading():
        while not done.is_set():
            try:
                read()
            except Exception as e:
                errors.append(repr(e))
                return

    reader = threading.Thread(target=keep_reading)
    reader.start()
    try:
        for i in range(times):
            write(i)
    finally:
        done.set()
        reader.join()
    return errors


def test_other_ranks_never_read_a_half_written_progress_file(tmp_path):
    """Rank 1 reads progress.json while rank 0 writes it (a two-rank --resume once failed in CI with
    rank 1's JSONDecodeError on an empty file): every read sees a whole list, the old one or the new."""
    writer = RunProgress(tmp_path, resume=False, writer=True)
    errors = _errors_reading_while_written(
        lambda: RunProgress(tmp_path, resume=True, writer=False), lambda i: writer.record(f"stage{i}"), 1000
    )
    assert not errors, errors
    assert len(RunProgress(tmp_path, resume=True, writer=True).stages) == 1000  # a resume keeps the list


def test_other_ranks_never_read_a_half_written_config(tmp_path):
    """On a --resume every rank checks the run's config.yaml while rank 0 writes it again."""
    from rlhf_lab.headless_config import write_config
    from rlhf_lab.headless_resume import check_same_run

    config = {"preset": "tiny", "task": "positive_review", "rl": {"steps": 2, "beta": 0.1}}
    path = tmp_path / "config.yaml"
    write_config(config, path)
    errors = _errors_reading_while_written(
        lambda: check_same_run(config, path), lambda _: write_config(config, path), 200
    )
    assert not errors, errors


def test_steps_are_taken_in_chunks_with_a_save_after_each():
    class Stage:
        step_count, rows, taken = 1, [], []

        def step(self, n, progress):
            self.taken.append(n)
            self.step_count += n

    saves, stage = [], Stage()
    run_steps(stage, 8, name="rl", every=3, save=lambda: saves.append(stage.step_count), progress=False)
    assert stage.taken == [3, 3, 1] and saves == [4, 7, 8]
    run_steps(stage, 8, name="rl", every=3, save=lambda: saves.append(stage.step_count), progress=False)
    assert saves == [4, 7, 8]  # resumed with nothing left to take: its checkpoint is not written again
    fresh = Stage()
    fresh.step_count = 0
    run_steps(fresh, 0, name="sft", every=3, save=lambda: saves.append("fresh"), progress=False)
    assert saves[-1] == "fresh"  # a fresh stage of 0 steps is still saved, as before checkpoint_every
    with pytest.raises(ConfigError, match="checkpoint_every must be a whole number"):
        train({**CONFIG, "checkpoint_every": 0})  # checked before any model loads


def test_the_cli_resumes(tmp_path, capsys):
    config = {**CONFIG, "output_dir": str(tmp_path / "run"), "sft": {"steps": 1, "batch_size": 2}}
    config.pop("rl"), config.pop("reward_model")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--quiet"]) == 0
    config["sft"]["steps"] = 2
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--quiet", "--resume"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["resumed"] == {"sft": 1} and summary["sft"]["steps"] == 2


@pytest.mark.slow
def test_two_ranks_resume_from_rank_0s_checkpoint_to_the_weights_of_a_run_that_never_stopped(tmp_path):
    """Each rank keeps its own prompts and its own random stream: 2 steps, then --resume to 4, ends with
    the weights of one 4-step run (both checkpoint every 2 steps)."""
    from two_ranks import train_on_two_ranks, why_it_failed

    config = {
        **CONFIG,
        "output_dir": str(tmp_path / "run"),
        "rl": {**CONFIG["rl"], "reward": "gold", "steps": 2},
    }
    config.pop("reward_model")
    path = tmp_path / "c.yaml"
    for steps, extra in ((2, []), (4, ["--resume"])):
        config["rl"]["steps"] = steps
        path.write_text(yaml.safe_dump(config))
        done = train_on_two_ranks(path, tmp_path, "--quiet", *extra)
        assert done.returncode == 0, why_it_failed(done)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["resumed"] == {"sft": 2, "rl": 2} and summary["rl"]["steps"] == 4
    ranks = [json.loads((tmp_path / "run" / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["param_sha256"] == ranks[1]["param_sha256"] == summary["param_sha256"]

    path.write_text(yaml.safe_dump({**config, "output_dir": str(tmp_path / "whole")}))
    whole = train_on_two_ranks(path, tmp_path, "--quiet")
    assert whole.returncode == 0, why_it_failed(whole)
    assert json.loads(whole.stdout.strip().splitlines()[-1])["param_sha256"] == summary["param_sha256"]


def test_a_failed_two_rank_run_shows_the_rank_that_crashed():
    """The failure message of the two-rank tests leads with each rank's own first error: the crashed
    rank's, not only the other rank's "Connection closed by peer" at the end of stderr."""
    import subprocess

    from two_ranks import why_it_failed

    stderr = "\n".join(
        [
            "[rank1]: Traceback (most recent call last):",
            '[rank1]:   File "stage.py", line 9, in step',
            "[rank1]: ValueError: the crash itself",
            "[rank1]: During handling of the above exception, another exception occurred:",
            "[rank0]: Traceback (most recent call last):",
            "[rank0]: RuntimeError: Connection closed by peer",
        ]
        + ["torchrun noise"] * 200
    )
    message = why_it_failed(subprocess.CompletedProcess([], 1, "", stderr), tail=100)
    assert message.index("ValueError: the crash itself") < message.index("--- end of stderr ---")
    assert "During handling" not in message.split("--- end")[0]
    assert "RuntimeError: Connection closed by peer" in message.split("--- end")[0]
