"""`rlhf_lab.tracking.log_to`: metric rows streamed to TensorBoard (event files), missing trackers explained."""

import importlib.util

import pytest

from rlhf_lab.tracking import TrackerMissingError, log_to, metrics_of

DEMOS = [{"prompt": f"Say hi {i}.", "response": "Hi there!"} for i in range(4)]


def test_metrics_of_keeps_finite_numbers_only():
    row = {
        "stage": "sft",
        "step": 3,
        "lab_step": 7,
        "wall_time": 1.0,
        "loss/sft": 2.5,
        "ok": True,
        "bad": float("nan"),
        "name": "x",
    }
    assert metrics_of(row) == {"loss/sft": 2.5}


@pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None,
    reason="the tensorboard package is not installed (pip install tensorboard; it is in the dev extras)",
)
def test_tensorboard_event_files_hold_the_metric_names_at_lab_steps(tiny_lab, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sft = tiny_lab.sft(DEMOS, batch_size=2)
    sft.step(2, progress=False)  # rows before attaching are replayed
    tracker = log_to(sft, "tensorboard", log_dir=tmp_path / "tb")
    sft.step(1, progress=False)
    tracker.close()
    assert tracker.rows_logged == 3
    sft.step(1, progress=False)  # after close: not logged
    assert tracker.rows_logged == 3
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/sft", "train/learning_rate", "time/step_s"} <= tags
    assert [e.step for e in events.Scalars("loss/sft")] == [1, 2, 3]  # lab_step is the x-axis


def test_a_missing_tracker_says_how_to_install_it(tiny_lab, monkeypatch):
    import rlhf_lab.tracking as tracking

    real = tracking.importlib.import_module

    def fake(name):
        if name == "wandb":
            raise ImportError("No module named 'wandb'")
        return real(name)

    monkeypatch.setattr(tracking.importlib, "import_module", fake)
    with pytest.raises(TrackerMissingError, match="pip install wandb"):
        log_to(tiny_lab.sft(DEMOS), "wandb")
    with pytest.raises(ValueError, match="unknown tracker"):
        log_to([], "mlflow")


def test_a_prefix_tells_two_stages_of_one_kind_apart(tiny_lab):
    from rlhf_lab.tracking import Tracker

    written = []
    tracker = Tracker(
        "memory", write=lambda metrics, step, wall: written.append(set(metrics)), finish=lambda: None
    )
    first, second = tiny_lab.sft(DEMOS, batch_size=2), tiny_lab.sft(DEMOS, batch_size=2)
    first.step(1, progress=False)  # replayed on attach, with its prefix
    tracker.attach(first, prefix="helpful/").attach(second, prefix="harmless/")
    second.step(1, progress=False)
    tracker.close()
    assert "helpful/loss/sft" in written[0] and "harmless/loss/sft" in written[1]
    assert not any(name.startswith("loss/") for names in written for name in names)
