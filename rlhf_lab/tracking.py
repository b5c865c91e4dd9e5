"""Stream a stage's metric rows to an experiment tracker: TensorBoard, Weights & Biases or trackio.

    >>> from rlhf_lab.tracking import log_to
    >>> tracker = log_to([sft, rm, ppo], "tensorboard", log_dir="runs/tb")   # or one stage
    >>> ppo.run(steps=100)                   # every row goes out as it is produced
    >>> tracker.close()                      # unsubscribes and flushes

Every numeric metric of every row (training and evaluation rows) is logged under its own name
(the TRL-style names of rlhf_lab.metrics, e.g. `loss/sft`, `objective/kl`) with the lab's
`lab_step` as the x-axis, so SFT, the reward model and RL read as one story, as in the lab's
dashboard. The trackers are optional dependencies, imported only here, each with an install hint:

- "tensorboard": `torch.utils.tensorboard.SummaryWriter(log_dir)` (needs `pip install tensorboard`);
  options go to SummaryWriter.
- "wandb": `wandb.init(**options)` unless a run is active; `lab_step` is declared as every metric's
  step (`wandb.define_metric`), so W&B's own step counter does not matter.
- "trackio": `trackio.init(project=..., **options)`, then `trackio.log(metrics, step=lab_step)`.
"""

from __future__ import annotations

import importlib
import math
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from rlhf_lab.errors import RLHFLabError

BACKENDS = ("tensorboard", "wandb", "trackio")
_NOT_METRICS = frozenset({"stage", "step", "lab_step", "wall_time", "elapsed_s"})
_INSTALL = {
    "tensorboard": "pip install tensorboard",
    "wandb": "pip install wandb (then `wandb login`, or WANDB_MODE=offline)",
    "trackio": "pip install trackio",
}


class TrackerMissingError(RLHFLabError, ImportError):
    """The tracker's package is not installed; the message says how to install it."""


def _import(backend: str, module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise TrackerMissingError(
            f"log_to(..., {backend!r}) needs the {module.split('.')[0]!r} package, which is not installed "
            f"({exc}). Install it with: {_INSTALL[backend]}"
        ) from None


def metrics_of(row: dict[str, Any]) -> dict[str, float]:
    """The row's finite numeric metrics (bookkeeping columns and non-numbers left out)."""
    out = {}
    for key, value in row.items():
        if key in _NOT_METRICS or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[key] = float(value)
    return out


class Tracker:
    """A subscription that sends each metric row to one backend; `close()` ends it."""

    def __init__(
        self,
        backend: str,
        write: Callable[[dict[str, float], int, float | None], None],
        finish: Callable[[], None],
    ) -> None:
        self.backend = backend
        self._write = write
        self._finish = finish
        self._unsubscribe: list[Callable[[], None]] = []
        self._lock = threading.Lock()  # rows arrive from background threads of several stages
        self.rows_logged = 0
        self.closed = False

    def attach(self, stage: Any, replay: bool = True, prefix: str = "") -> Tracker:
        """Log `stage`'s rows from now on (and, with `replay`, the rows it already has). `prefix` goes
        before each metric name, to tell apart two stages of one kind (e.g. "helpful/" and "harmless/"
        for two reward models, whose metrics share the names `rm/accuracy`, `loss/rm`, ...)."""

        def log(row: dict[str, Any]) -> None:
            self(row, prefix)

        if replay:
            for row in stage.rows:
                log(row)
        self._unsubscribe.append(stage.subscribe(log))
        return self

    def __call__(self, row: dict[str, Any], prefix: str = "") -> None:
        metrics = {f"{prefix}{name}": value for name, value in metrics_of(row).items()}
        if not metrics or self.closed:
            return
        with self._lock:
            self._write(metrics, int(row.get("lab_step", row.get("step", 0))), row.get("wall_time"))
            self.rows_logged += 1

    def close(self) -> None:
        """Stop listening and flush/finish the backend's run."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        if not self.closed:
            self.closed = True
            self._finish()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Tracker {self.backend}: {self.rows_logged} rows{' (closed)' if self.closed else ''}>"


def _tensorboard(log_dir: str | os.PathLike | None = None, **options: Any) -> Tracker:
    _import("tensorboard", "tensorboard")  # SummaryWriter needs it; say so before torch's own error
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=None if log_dir is None else str(log_dir), **options)

    def write(metrics: dict[str, float], step: int, wall_time: float | None) -> None:
        for name, value in metrics.items():
            writer.add_scalar(name, value, global_step=step, walltime=wall_time)

    def finish() -> None:
        writer.flush()
        writer.close()

    tracker = Tracker("tensorboard", write, finish)
    tracker.log_dir = writer.log_dir
    return tracker


def _wandb(**options: Any) -> Tracker:
    wandb = _import("wandb", "wandb")
    own_run = wandb.run is None
    run = wandb.init(**options) if own_run else wandb.run
    run.define_metric("lab_step")
    run.define_metric("*", step_metric="lab_step")

    def write(metrics: dict[str, float], step: int, wall_time: float | None) -> None:
        run.log({**metrics, "lab_step": step})

    return Tracker("wandb", write, run.finish if own_run else (lambda: None))


def _trackio(project: str = "rlhf-lab", **options: Any) -> Tracker:
    trackio = _import("trackio", "trackio")
    trackio.init(project=project, **options)

    def write(metrics: dict[str, float], step: int, wall_time: float | None) -> None:
        trackio.log(metrics, step=step)

    return Tracker("trackio", write, trackio.finish)


def log_to(stages: Any, backend: str = "tensorboard", *, replay: bool = True, **options: Any) -> Tracker:
    """Stream every metric row of `stages` (one stage or several) to `backend`; returns the Tracker.

    `options` go to the backend (tensorboard: `log_dir`; wandb: `project`, `name`, `mode`, ...;
    trackio: `project`, `name`, ...). With `replay=True` rows already in the stages' history are
    sent first, so attaching after a few steps loses nothing.
    """
    makers = {"tensorboard": _tensorboard, "wandb": _wandb, "trackio": _trackio}
    if backend not in makers:
        raise ValueError(f"unknown tracker {backend!r}; known: {', '.join(BACKENDS)}")
    tracker = makers[backend](**options)
    for stage in [stages] if hasattr(stages, "subscribe") else list(_stages(stages)):
        tracker.attach(stage, replay=replay)
    return tracker


def _stages(stages: Iterable[Any]) -> Iterable[Any]:
    for stage in stages:
        if not hasattr(stage, "subscribe"):
            raise TypeError(f"log_to expects stages (with subscribe), got {type(stage).__name__}")
        yield stage
