"""The stage contract every phase of the lab follows (SFT, reward model, PPO, DPO, ...).

A stage is an object a notebook drives step by step:

    >>> rows = stage.step(5)          # five optimisation steps in this thread, their metric rows
    >>> stage.run(steps=100)          # the same loop in a background thread
    >>> stage.pause(); stage.set(learning_rate=1e-4); stage.resume()
    >>> stage.history                 # every metric row so far, as a DataFrame
    >>> stage.subscribe(print)        # a view receives each row as it is produced
    >>> stage.save("runs/ppo"); again = type(stage).load("runs/ppo")

Subclasses implement `_train_step()` (one optimisation step returning a metrics dict) and the
checkpoint hooks. They call `self.check_finite(loss)` before `backward()`, so a NaN loss pauses
the stage before it can corrupt the weights.

Threading model: one lock serialises steps, so a stage never runs two steps at once, whether the
caller is the notebook or the background thread. Exceptions raised in the background thread are
kept and re-raised (chained, with their traceback) by the next call from the notebook. Nothing is
printed from the background thread; views read rows through `subscribe`.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from rlhf_lab.errors import NonFiniteLossError, StageBusyError, StageError

MetricRow = dict[str, Any]
Subscriber = Callable[[MetricRow], None]

_STAGE_CLASSES: dict[str, type[Stage]] = {}


class StepClock:
    """A lab-wide step counter, so SFT -> RM -> PPO share one x axis (`lab_step`)."""

    def __init__(self, start: int = 0) -> None:
        self._value = start
        self._lock = threading.Lock()

    def tick(self) -> int:
        with self._lock:
            self._value += 1
            return self._value

    @property
    def value(self) -> int:
        return self._value

    def advance_to(self, value: int) -> None:
        with self._lock:
            self._value = max(self._value, value)


class Stage(ABC):
    """Base class of every stage. See the module docstring for the contract.

    Subclasses set `name` (used as the `stage` column and in checkpoints) and `mutable_hparams`
    (the attribute names of `self.config` that `set()` may change between steps).
    """

    name: ClassVar[str] = "stage"
    mutable_hparams: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _STAGE_CLASSES[cls.__name__] = cls

    def __init__(
        self,
        config: Any,
        *,
        clock: StepClock | None = None,
        checkpoint_every: int | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or StepClock()
        self.step_count = 0
        self.checkpoint_every = checkpoint_every
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self._rows: list[MetricRow] = []
        self._subscribers: list[Subscriber] = []
        self.callback_errors: list[str] = []
        self._step_lock = threading.RLock()
        self._permit = threading.Event()  # set = the background loop may take the next step
        self._parked = threading.Event()  # set = the background loop is waiting (paused)
        self._stop_requested = False
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._error_traceback: str | None = None
        self._status = "idle"
        self._elapsed = 0.0  # seconds spent in steps, carried across save/load

    # ------------------------------------------------------------------ subclass API
    @abstractmethod
    def _train_step(self) -> dict[str, Any]:
        """Run one optimisation step and return its metrics (names from rlhf_lab.metrics)."""

    def check_finite(self, loss: torch.Tensor, what: str = "loss") -> None:
        """Raise NonFiniteLossError (pausing the stage) if `loss` is NaN or infinite.

        Call it before backward(): the step is then skipped and the weights stay as they were.
        """
        value = float(loss.detach().float().item())
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"{self.name}: {what} is {value} at step {self.step_count + 1}; the step was not applied "
                "and the stage is paused. Lower the learning rate, check the data/rewards for NaNs, "
                "or load the last checkpoint."
            )

    # ------------------------------------------------------------------ stepping
    def step(self, n: int = 1, progress: bool | None = None) -> list[MetricRow]:
        """Run `n` steps in the caller's thread and return their metric rows.

        A progress bar (tqdm.auto) is shown for n > 1 unless progress=False.
        """
        self.raise_if_error()
        if self._thread is not None and self._thread.is_alive() and not self._parked.is_set():
            raise StageBusyError(f"{self.name} is running in the background; call pause() before step().")
        rows: list[MetricRow] = []
        show = (n > 1) if progress is None else progress
        bar = None
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, desc=self.name, leave=False)
        try:
            for _ in range(n):
                rows.append(self._one_step())
                if bar is not None:
                    bar.update(1)
        except NonFiniteLossError:
            self._status = "paused"
            raise
        finally:
            if bar is not None:
                bar.close()
        return rows

    def _one_step(self) -> MetricRow:
        with self._step_lock:
            started = time.perf_counter()
            metrics = self._train_step()
            duration = time.perf_counter() - started
            self.step_count += 1
            self._elapsed += duration
            row: MetricRow = {
                "stage": self.name,
                "step": self.step_count,
                "lab_step": self.clock.tick(),
                "wall_time": time.time(),
                "elapsed_s": self._elapsed,
                "time/step_s": duration,
            }
            row.update({k: _plain(v) for k, v in metrics.items()})
        self._publish(row)
        if self.checkpoint_every and self.checkpoint_dir and self.step_count % self.checkpoint_every == 0:
            self.save(self.checkpoint_dir)
        return row

    def _publish(self, row: MetricRow) -> None:
        """Add `row` to history and hand it to every subscriber (training rows and evaluation rows)."""
        with self._step_lock:
            self._rows.append(row)
        for callback in list(self._subscribers):
            try:
                callback(row)
            except Exception:  # a broken view must not stop training
                self.callback_errors.append(traceback.format_exc())

    # ------------------------------------------------------------------ background loop
    def run(self, steps: int | None = None) -> None:
        """Take `steps` steps (forever if None) in a background thread; returns at once."""
        self.raise_if_error()
        if self._thread is not None and self._thread.is_alive():
            if self._parked.is_set():
                raise StageBusyError(f"{self.name} is paused with a run in progress; resume() or stop() it.")
            raise StageBusyError(f"{self.name} is already running.")
        self._stop_requested = False
        self._permit.set()
        self._parked.clear()
        self._status = "running"
        self._thread = threading.Thread(
            target=self._loop, args=(steps,), name=f"{self.name}-run", daemon=True
        )
        self._thread.start()

    def _loop(self, steps: int | None) -> None:
        done = 0
        try:
            while not self._stop_requested and (steps is None or done < steps):
                if not self._permit.is_set():
                    self._parked.set()
                    self._status = "paused"
                    self._permit.wait()
                    self._parked.clear()
                    if self._stop_requested:
                        break
                    self._status = "running"
                self._one_step()
                done += 1
            self._status = "stopped" if self._stop_requested else "done"
        except BaseException as exc:  # kept for the notebook; see raise_if_error
            self._error = exc
            self._error_traceback = traceback.format_exc()
            self._status = "error"
        finally:
            self._parked.set()

    def pause(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop after the current step. With wait=True, return once the loop is parked."""
        self._permit.clear()
        if wait and self._thread is not None and self._thread.is_alive():
            self._parked.wait(timeout)
        if self._status == "running":
            self._status = "paused"

    def resume(self) -> None:
        """Continue a paused background run (re-raises a background error first)."""
        self.raise_if_error()
        if self._thread is None or not self._thread.is_alive():
            raise StageError(f"{self.name} has no paused run to resume; call run().")
        self._status = "running"
        self._parked.clear()
        self._permit.set()

    def stop(self, timeout: float | None = None) -> None:
        """End the background run after its current step and wait for the thread."""
        self._stop_requested = True
        self._permit.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._status in ("running", "paused"):
            self._status = "stopped"

    def wait(self, timeout: float | None = None) -> None:
        """Block until the background run ends, then re-raise its error if it had one."""
        if self._thread is not None:
            self._thread.join(timeout)
        self.raise_if_error()

    def raise_if_error(self) -> None:
        """Re-raise an exception from the background thread once, chained to the original."""
        if self._error is None:
            return
        exc, tb = self._error, self._error_traceback
        self._error = None
        self._error_traceback = None
        self._status = "paused"
        if isinstance(exc, StageError):
            raise exc
        raise StageError(f"{self.name} stopped at step {self.step_count + 1}: {exc!r}\n\n{tb}") from exc

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._parked.is_set()

    @property
    def status(self) -> str:
        """idle, running, paused, stopped, done or error."""
        return self._status

    @property
    def error_message(self) -> str | None:
        """The pending background error, for views, without raising it."""
        return None if self._error is None else f"{type(self._error).__name__}: {self._error}"

    # ------------------------------------------------------------------ hyper-parameters
    def set(self, **changes: Any) -> None:
        """Change hyper-parameters listed in `mutable_hparams`; they apply from the next step."""
        unknown = [k for k in changes if k not in self.mutable_hparams]
        if unknown:
            raise ValueError(
                f"{self.name} cannot change {unknown} between steps; changeable: {list(self.mutable_hparams)}"
            )
        with self._step_lock:
            for key, value in changes.items():
                setattr(self.config, key, value)
            self._on_hparams_changed(changes)

    def _on_hparams_changed(self, changes: dict[str, Any]) -> None:
        """Hook: push changed values into optimisers or controllers (e.g. a new learning rate)."""
        return None

    # ------------------------------------------------------------------ observation
    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(row)` for each new metric row; returns a function that unsubscribes."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    @property
    def rows(self) -> list[MetricRow]:
        return list(self._rows)

    @property
    def history(self) -> pd.DataFrame:
        """Every metric row so far (step, lab_step, wall time and the stage's metrics)."""
        return pd.DataFrame(self._rows)

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: str | os.PathLike) -> Path:
        """Write a complete checkpoint to `path` atomically (temp folder, then rename).

        A crash or a full disk during the save leaves the previous checkpoint at `path` intact.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
        try:
            with self._step_lock:
                self._save_state(staging)
                meta = {
                    "class": type(self).__name__,
                    "name": self.name,
                    "step_count": self.step_count,
                    "lab_step": self.clock.value,
                    "elapsed_s": self._elapsed,
                    "config": config_to_dict(self.config),
                    "format": 1,
                }
                with open(staging / "history.jsonl", "w", encoding="utf-8") as f:
                    for row in self._rows:
                        f.write(json.dumps(row) + "\n")
                torch.save(rng_state(), staging / "rng.pt")
                _write_json(staging / "stage.json", meta)  # written last: its presence means complete
            _fsync_tree(staging)
            _swap_into_place(staging, path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, **kwargs: Any) -> Stage:
        """Rebuild a stage from `save(path)`; it continues the same run and curve.

        Extra keyword arguments go to the subclass (e.g. a reward callable that cannot be saved).
        """
        path = _recover(Path(path))
        meta = json.loads((path / "stage.json").read_text(encoding="utf-8"))
        target = _STAGE_CLASSES.get(meta["class"])
        if target is None:
            raise StageError(f"{path} holds a {meta['class']} checkpoint, which this version does not know.")
        if cls is not Stage and not issubclass(target, cls):
            raise StageError(f"{path} holds a {meta['class']} checkpoint, not a {cls.__name__}.")
        stage = target._from_checkpoint(path, meta, **kwargs)
        stage.step_count = meta["step_count"]
        stage._elapsed = meta.get("elapsed_s", 0.0)
        stage.clock.advance_to(meta.get("lab_step", 0))
        with open(path / "history.jsonl", encoding="utf-8") as f:
            stage._rows = [json.loads(line) for line in f if line.strip()]
        set_rng_state(torch.load(path / "rng.pt", weights_only=True))
        return stage

    @abstractmethod
    def _save_state(self, folder: Path) -> None:
        """Write weights (safetensors), optimizer/scheduler state and data the stage needs."""

    @classmethod
    @abstractmethod
    def _from_checkpoint(cls, folder: Path, meta: dict[str, Any], **kwargs: Any) -> Stage:
        """Build the stage from `folder` (config in meta['config']); counters are restored by load()."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} step={self.step_count} status={self.status}>"


# ---------------------------------------------------------------------- helpers
def config_to_dict(config: Any) -> dict[str, Any]:
    if is_dataclass(config):
        return {f.name: getattr(config, f.name) for f in fields(config) if _jsonable(getattr(config, f.name))}
    return {}


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def config_from_dict(config_cls: type, data: dict[str, Any], **overrides: Any) -> Any:
    names = {f.name for f in fields(config_cls)}
    return config_cls(**{k: v for k, v in {**data, **overrides}.items() if k in names})


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def rng_state() -> dict[str, Any]:
    """Every RNG a step draws from, as tensors and plain lists (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": list(_flatten_python_state(random.getstate())),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(x) for x in internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _flatten_python_state(state: tuple) -> tuple:
    version, internal, gauss = state
    return version, list(internal), gauss


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())


def _fsync_tree(folder: Path) -> None:
    for file in folder.rglob("*"):
        if file.is_file():
            with open(file, "rb") as f:
                os.fsync(f.fileno())


def _swap_into_place(staging: Path, path: Path) -> None:
    old = path.with_name(f".{path.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if path.exists():
        os.replace(path, old)
    os.replace(staging, path)
    shutil.rmtree(old, ignore_errors=True)


def _recover(path: Path) -> Path:
    """A crash between the two renames of a save leaves `.name.old`: use it."""
    if (path / "stage.json").is_file():
        return path
    old = path.with_name(f".{path.name}.old")
    if (old / "stage.json").is_file():
        return old
    raise FileNotFoundError(f"No complete stage checkpoint at {path}")


def model_path(folder: Path, key: str) -> Path:
    return folder / "models" / key


def save_model(folder: Path, key: str, model: Any, tokenizer: Any | None = None) -> None:
    """save_pretrained as safetensors (never pickle for weights), plus the tokenizer."""
    target = model_path(folder, key)
    model.save_pretrained(target, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(target)


def save_training_state(
    folder: Path, optimizer: Any, scheduler: Any | None = None, key: str = "optim"
) -> None:
    state = {"optimizer": optimizer.state_dict()}
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    torch.save(state, folder / f"{key}.pt")


def load_training_state(
    folder: Path, optimizer: Any, scheduler: Any | None = None, key: str = "optim"
) -> None:
    state = torch.load(folder / f"{key}.pt", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and "scheduler" in state:
        scheduler.load_state_dict(state["scheduler"])


def ensure_dataclass_copy(config: Any) -> Any:
    """Stages mutate their config via set(); keep the caller's object untouched."""
    return type(config)(**asdict(config)) if is_dataclass(config) else config
