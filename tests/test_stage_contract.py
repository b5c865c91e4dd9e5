"""The stage contract, on a toy stage that fits y = 3x with one weight."""

import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from rlhf_lab.errors import NonFiniteLossError, StageBusyError, StageError
from rlhf_lab.stages.base import Stage, load_training_state, save_training_state


@dataclass
class ToyConfig:
    learning_rate: float = 0.1
    poison_at: int = -1  # a step that produces a NaN loss
    fail_at: int = -1  # a step that raises
    sleep_s: float = 0.0


class ToyStage(Stage):
    name = "toy"
    mutable_hparams = ("learning_rate", "poison_at", "fail_at", "sleep_s")

    def __init__(self, config=None, **kwargs):
        super().__init__(config or ToyConfig(), **kwargs)
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.optimizer = torch.optim.SGD([self.weight], lr=self.config.learning_rate)

    def _on_hparams_changed(self, changes):
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.learning_rate

    def _train_step(self):
        time.sleep(self.config.sleep_s)
        n = self.step_count + 1
        if n == self.config.fail_at:
            raise ValueError("boom")
        x = torch.randn(8)
        loss = ((self.weight * x - 3 * x) ** 2).mean()
        if n == self.config.poison_at:
            loss = loss * float("nan")
        self.check_finite(loss)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss/total": loss.item(), "train/learning_rate": self.config.learning_rate}

    def _save_state(self, folder):
        torch.save({"weight": self.weight.detach()}, folder / "weight.pt")
        save_training_state(folder, self.optimizer)

    @classmethod
    def _from_checkpoint(cls, folder, meta, **kwargs):
        stage = cls(ToyConfig(**meta["config"]))
        with torch.no_grad():
            stage.weight.copy_(torch.load(folder / "weight.pt", weights_only=True)["weight"])
        load_training_state(folder, stage.optimizer)
        return stage


def test_step_returns_rows_and_history():
    stage = ToyStage()
    rows = stage.step(3)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert list(stage.history["step"]) == [1, 2, 3]
    assert {"lab_step", "wall_time", "elapsed_s", "loss/total"} <= set(stage.history.columns)
    assert abs(stage.weight.item() - 3) < 3  # the weight moved towards the target 3 (from 0)


def test_run_pause_set_resume_stop():
    stage = ToyStage(ToyConfig(sleep_s=0.01))
    seen = []
    stage.subscribe(seen.append)
    stage.run()
    time.sleep(0.1)
    stage.pause()
    assert stage.status == "paused" and not stage.running
    count = stage.step_count
    time.sleep(0.05)
    assert stage.step_count == count  # really paused
    stage.set(learning_rate=0.01)
    stage.step(1)  # manual steps are allowed while parked
    stage.resume()
    time.sleep(0.05)
    stage.stop()
    assert stage.status == "stopped"
    assert stage.step_count > count + 1
    assert seen[-1]["train/learning_rate"] == 0.01
    assert len(seen) == stage.step_count


def test_step_while_running_is_refused():
    stage = ToyStage(ToyConfig(sleep_s=0.02))
    stage.run()
    try:
        with pytest.raises(StageBusyError):
            stage.step()
    finally:
        stage.stop()


def test_run_with_count_finishes():
    stage = ToyStage()
    stage.run(steps=5)
    stage.wait(5)
    assert stage.step_count == 5 and stage.status == "done"


def test_background_exception_reaches_caller_with_traceback():
    stage = ToyStage(ToyConfig(fail_at=3))
    stage.run()
    stage._thread.join(5)
    assert stage.status == "error" and "boom" in stage.error_message
    with pytest.raises(StageError) as info:
        stage.step()
    assert isinstance(info.value.__cause__, ValueError)
    assert "_train_step" in str(info.value)  # the traceback travels with it
    assert stage.step_count == 2
    stage.set(fail_at=-1)
    stage.step()  # the error is cleared once raised
    assert stage.step_count == 3


def test_nan_loss_pauses_without_touching_weights():
    stage = ToyStage(ToyConfig(poison_at=2))
    stage.step()
    before = stage.weight.detach().clone()
    with pytest.raises(NonFiniteLossError, match="not applied"):
        stage.step()
    assert stage.status == "paused"
    assert torch.equal(stage.weight.detach(), before)
    assert stage.step_count == 1
    stage.set(poison_at=-1)
    stage.step()
    assert stage.step_count == 2 and not torch.equal(stage.weight.detach(), before)


def test_nan_in_background_pauses():
    stage = ToyStage(ToyConfig(poison_at=4))
    stage.run(steps=10)
    stage._thread.join(5)
    assert stage.step_count == 3
    with pytest.raises(NonFiniteLossError):
        stage.resume()


def test_save_load_continues_the_same_run(tmp_path):
    torch.manual_seed(0)
    uninterrupted = ToyStage()
    uninterrupted.step(4)
    expected = uninterrupted.step(2)

    torch.manual_seed(0)
    first = ToyStage()
    first.step(4)
    first.save(tmp_path / "ckpt")
    torch.manual_seed(123)  # anything the kernel does between save and load
    resumed = ToyStage.load(tmp_path / "ckpt")
    got = resumed.step(2)
    assert [r["step"] for r in got] == [5, 6]
    assert got[-1]["loss/total"] == pytest.approx(expected[-1]["loss/total"], rel=1e-6)
    assert len(resumed.history) == 6


def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    stage = ToyStage()
    stage.step(2)
    stage.save(tmp_path / "ckpt")
    stage.step(2)

    def broken(folder):
        (folder / "partial.bin").write_bytes(b"x" * 10)
        raise OSError("No space left on device")

    monkeypatch.setattr(stage, "_save_state", broken)
    with pytest.raises(OSError):
        stage.save(tmp_path / "ckpt")
    assert ToyStage.load(tmp_path / "ckpt").step_count == 2
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_save_never_replaces_what_is_not_a_checkpoint(tmp_path):
    # A save swaps the folder at its path out to .<name>.old and the next save deletes it: saving into
    # a notebook's runs/ folder would have hidden, then deleted, the labels.sqlite in it.
    from rlhf_lab.errors import CheckpointError

    stage = ToyStage()
    stage.step(1)
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "labels.sqlite").write_bytes(b"my labels")
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    for target, what in ((runs, r"a folder of other files \(labels.sqlite\)"), (notes, "a file")):
        with pytest.raises(CheckpointError, match=f"Not saving to .*: it is {what}, not a stage checkpoint"):
            stage.save(target)
    assert (runs / "labels.sqlite").read_bytes() == b"my labels" and notes.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "runs"]  # no .old, no staging left
    # An empty folder, a new path and an earlier checkpoint are all fine to save to.
    (tmp_path / "empty").mkdir()
    for target in (tmp_path / "empty", tmp_path / "new", tmp_path / "new"):
        stage.save(target)
        assert ToyStage.load(target).step_count == 1


def test_automatic_checkpoints(tmp_path):
    stage = ToyStage(checkpoint_every=2, checkpoint_dir=tmp_path / "auto")
    stage.step(5)
    assert ToyStage.load(tmp_path / "auto").step_count == 4


def test_set_rejects_unknown_hparams():
    with pytest.raises(ValueError, match="changeable"):
        ToyStage().set(momentum=0.9)


def test_subscriber_errors_do_not_stop_training():
    stage = ToyStage()
    stage.subscribe(lambda row: 1 / 0)
    stage.step(2)
    assert stage.step_count == 2 and len(stage.callback_errors) == 2


def test_steps_never_overlap():
    stage = ToyStage(ToyConfig(sleep_s=0.005))
    active = []
    lock = threading.Lock()
    original = stage._train_step

    def guarded():
        with lock:
            active.append(1)
            assert len(active) == 1
        try:
            return original()
        finally:
            active.pop()

    stage._train_step = guarded
    stage.run(steps=20)
    for _ in range(5):
        stage.pause()
        stage.step()
        stage.resume()
    stage.wait(10)
    assert stage.step_count == 25


def test_release_frees_the_training_state_and_keeps_the_history(tiny_lab, tmp_path):
    import gc
    import weakref

    from rlhf_lab.errors import StageError

    prompts = ["Describe a cat.", "Say hi."]
    ppo = tiny_lab.ppo(prompts, reward=lambda p, r: [len(x) / 10 for x in r], batch_size=4, max_new_tokens=4)
    ppo.step(2)
    reference = weakref.ref(ppo.ref_policy)  # its own copy: no snapshot was taken
    moments = sum(
        t.numel() * t.element_size()
        for s in ppo.optimizer.state.values()
        for t in s.values()
        if hasattr(t, "numel")
    )
    assert moments > 0
    history, samples = ppo.history, ppo.samples()
    assert ppo.release() is None  # a notebook cell ending with it shows nothing
    gc.collect()
    assert ppo.released_bytes > moments and reference() is None
    assert not ppo.optimizer.state and all(p.grad is None for p in tiny_lab.policy.parameters())
    assert ppo.value_head is None and ppo.released and ppo.status == "released"
    assert ppo.history.equals(history) and ppo.samples() == samples
    for action in (
        lambda: ppo.step(1),
        lambda: ppo.run(2),
        lambda: ppo.save(tmp_path / "x"),
    ):
        with pytest.raises(StageError, match="released"):
            action()
    # a stage still running cannot be released under its thread
    sft = tiny_lab.sft([{"prompt": "p", "response": "r"}] * 4, batch_size=2)
    sft.run()
    try:
        with pytest.raises(StageError, match="stop"):
            sft.release()
    finally:
        sft.stop()
    sft.release()
    assert sft.released_bytes > 0 and not sft.optimizer.state


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda st: st.step(-1), ValueError, r"step\(n\) must be at least 0, got -1"),
        (lambda st: st.step(1.5), TypeError, r"step\(n\) must be a whole number, got 1.5"),
        (lambda st: st.step("2"), TypeError, r"step\(n\) must be a whole number"),
        (lambda st: st.step(True), TypeError, r"step\(n\) must be a whole number"),
        (lambda st: st.run(-3), ValueError, r"run\(steps\) must be at least 0"),
        (lambda st: st.run(2.0), TypeError, r"run\(steps\) must be a whole number"),
    ],
)
def test_step_counts_must_be_whole_numbers(call, error, match):
    # step(-1) used to return [] and run(-3) to start a thread that did nothing, both silently.
    stage = ToyStage()
    with pytest.raises(error, match=match):
        call(stage)
    assert stage.step_count == 0 and stage.status == "idle"
    assert len(stage.step(np.int64(2))) == 2  # numpy integers are whole numbers too


def test_the_stop_button_during_step_says_what_is_kept(capsys):
    from ui_fakes import FakeStage

    class StoppedAtThree(FakeStage):
        def _train_step(self):
            if self.step_count == 2 and not getattr(self, "pressed", False):
                self.pressed = True
                raise KeyboardInterrupt  # what the notebook's stop button raises in this thread
            return super()._train_step()

    stage = StoppedAtThree()
    with pytest.raises(KeyboardInterrupt):
        stage.step(5)
    assert "Interrupted in step 3: the 2 step(s) before it in this call are kept" in capsys.readouterr().out
    assert stage.step_count == 2 and len(stage.history) == 2
    assert stage.step(1)[0]["step"] == 3  # the stage goes on from there


def test_saving_and_loading_a_stage_print_no_transformers_progress_bars(tmp_path, capfd):
    from rlhf_lab import Lab
    from rlhf_lab.bundled import load_demos
    from rlhf_lab.reward.stage import RewardModelStage
    from rlhf_lab.stages.sft import SFTStage

    lab = Lab.from_preset("tiny", store=":memory:")
    sft = lab.sft(load_demos("positive_review")[:4], batch_size=2)
    rm = lab.reward_model([{"prompt": "p", "chosen": "good", "rejected": "bad"}] * 4, batch_size=2)
    capfd.readouterr()
    sft.save(tmp_path / "sft")
    rm.save(tmp_path / "rm")
    SFTStage.load(tmp_path / "sft")
    RewardModelStage.load(tmp_path / "rm")
    err = capfd.readouterr().err
    assert "Writing model shards" not in err and "Loading weights" not in err, err[-500:]
