"""The stage contract every phase of the lab follows (SFT, reward model, PPO, DPO, ...).

A stage is an object a notebook drives step by step:

    >>> rows = stage.step(5)          # five optimisation steps in this thread, their metric rows
    >>> stage.run(steps=100)          # the same loop in a background thread
    >>> stage.pause(); stage.set(learning_rate=1e-4); stage.resume()
    >>> stage.history                 # every metric row so far, as a DataFrame
    >>> stage.subscribe(print)        # a view receives each row as it is produced
    >>> stage.save("runs/ppo"); again = type(stage).load("runs/ppo")

Subclasses implement `_train_step()` (one optimisation step returning a metrics dict) and the
checkpoint hooks. A stage's config is a dataclass built by `make_config` with a `validate()` the
base calls on construction and before `set()` changes anything, so a bad value never reaches a step.
`self.check_finite(loss)` before `backward()` pauses the stage before a NaN loss touches the weights.

Threading model: one lock serialises steps, whether the caller is the notebook or the background
thread. Exceptions raised in the background thread are kept and re-raised (chained, with their
traceback) by the next call from the notebook. The background thread prints nothing; views read
rows through `subscribe`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import is_dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import torch

from rlhf_lab.errors import NonFiniteLossError, StageBusyError, StageError
from rlhf_lab.generation import model_lock
from rlhf_lab.hparams import whole_number
from rlhf_lab.models.presets import quiet_loading
from rlhf_lab.progress import progress_bar, wait_with_progress
from rlhf_lab.stages.checkpoint import (  # noqa: F401  (re-exported: stages import them from here)
    FORMAT,
    _write_json,
    check_save_target,
    config_from_dict,
    config_to_dict,
    load_training_state,
    model_path,
    plain_value,
    rng_state,
    save_model,
    save_training_state,
    set_rng_state,
    verified_checkpoint,
    write_atomically,
)
from rlhf_lab.stages.clock import StepClock  # noqa: F401  (re-exported: stages import it from here)
from rlhf_lab.stages.configs import (  # noqa: F401  (re-exported: stages import them from here)
    make_config,
    rename_deprecated,
    validate_config,
)

MetricRow = dict[str, Any]
Subscriber = Callable[[MetricRow], None]

_STAGE_CLASSES: dict[str, type[Stage]] = {}


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
        self.config = validate_config(config)
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
        self._run_ended = threading.Event()  # set = no background loop (waits use it, not join)
        self._run_ended.set()
        self._stop_requested = False
        self._thread: threading.Thread | None = None
        self._run_steps: int | None = None  # what the latest run() asked for, and the step it began at
        self._run_start = 0
        self._error: BaseException | None = None
        self._error_traceback: str | None = None
        self._status = "idle"
        self._elapsed = 0.0  # seconds spent in steps, carried across save/load
        self.released = False  # True after release(): history only, no more training
        self.released_bytes = 0
        self.hparam_changes: list[tuple[int, dict[str, Any]]] = []  # (steps taken before, set()'s changes)

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

        A progress bar (tqdm.auto) appears for n > 1 once the steps have taken a couple of seconds
        (rlhf_lab.progress); progress=True shows it at once, progress=False never.
        """
        n = whole_number(n, "step(n)")
        self.raise_if_error()
        self._check_not_released("step")
        if self.run_in_flight and not self._parked.is_set():
            raise StageBusyError(f"{self.name} is running in the background; call pause() before step().")
        rows: list[MetricRow] = []
        bar = progress_bar(n, self.name, show=False if progress is None and n == 1 else progress)
        try:
            for _ in range(n):
                rows.append(self._one_step())
                bar.update(1)
        except NonFiniteLossError:
            self._status = "paused"
            raise
        except KeyboardInterrupt:  # the notebook's stop button: say what is kept
            print(
                f"Interrupted in step {self.step_count + 1}: the {len(rows)} step(s) before it in this call are "
                "kept, and that step may be partly applied (no history row).",
                flush=True,
            )
            raise
        finally:
            bar.close()
        return rows

    def _one_step(self) -> MetricRow:
        with self._step_lock, self._trained_model_lock():
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
            row.update({k: plain_value(v) for k, v in metrics.items()})
        self._publish(row)
        if self.checkpoint_every and self.checkpoint_dir and self.step_count % self.checkpoint_every == 0:
            self.save(self.checkpoint_dir)
        return row

    def _trained_model_lock(self):
        """The lock of the model a step updates (RL, DPO: `policy`; SFT, reward model: `model`), which
        `rlhf_lab.generation.generate` takes too: sampling from it waits for the step to end."""
        model = getattr(self, "policy", None)
        model = getattr(self, "model", None) if model is None else model
        return model_lock(model) if isinstance(model, torch.nn.Module) else contextlib.nullcontext()

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
        if steps is not None:
            steps = whole_number(steps, "run(steps)")
        self.raise_if_error()
        self._check_not_released("run")
        if self.run_in_flight:
            if self._parked.is_set():
                raise StageBusyError(f"{self.name} is paused with a run in progress; resume() or stop() it.")
            raise StageBusyError(f"{self.name} is already running.")
        self._stop_requested = False
        self._run_steps, self._run_start = steps, self.step_count
        self._permit.set()
        self._parked.clear()
        self._run_ended.clear()
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
            self._run_ended.set()

    def pause(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop after the current step. With wait=True, return once the loop is parked."""
        self._permit.clear()
        if wait and self.run_in_flight:
            self._parked.wait(timeout)
        if self._status == "running":
            self._status = "paused"

    def resume(self) -> None:
        """Continue a paused background run (re-raises a background error first)."""
        self.raise_if_error()
        if not self.run_in_flight:
            raise StageError(f"{self.name} has no paused run to resume; call run().")
        self._status = "running"
        self._parked.clear()
        self._permit.set()

    def stop(self, timeout: float | None = None) -> None:
        """End the background run after its current step and wait for the thread."""
        self._stop_requested = True
        self._permit.set()
        if self._thread is not None and self._run_ended.wait(timeout):
            self._thread.join()  # the loop has returned: the thread is only exiting (an instant)
        if self._status in ("running", "paused"):
            self._status = "stopped"

    def wait(self, timeout: float | None = None, progress: bool | None = None) -> None:
        """Block until the background run ends, then re-raise its error if it had one. A bar of the steps
        appears after a couple of seconds (`progress` as in step); the stop button pauses the run."""
        if self._thread is not None:
            done = lambda: self.step_count - self._run_start  # noqa: E731
            try:
                ended = wait_with_progress(
                    self._run_ended, done, self._run_steps, self.name, timeout=timeout, show=progress
                )
            except KeyboardInterrupt:
                self.pause_on_interrupt()
                raise
            if ended:
                self._thread.join()  # the loop has returned: the thread is only exiting
        self.raise_if_error()

    def pause_on_interrupt(self) -> None:
        """Pause a run whose waiting cell was interrupted, and say so, rather than let it go on unseen.
        It does not wait for the current step (on a CPU that can take a minute)."""
        if not self.run_in_flight or self._status != "running":
            return
        self.pause(wait=False)
        print(
            f"Interrupted: {self.name} pauses after its current step (step {self.step_count + 1}); its "
            "weights and curves are kept. Press Run in the dashboard or call resume() to go on, stop() to end.",
            flush=True,
        )

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
    def run_in_flight(self) -> bool:
        """A background run has started and not ended (running or paused)."""
        return not self._run_ended.is_set()

    @property
    def running(self) -> bool:
        return self.run_in_flight and not self._parked.is_set()

    @property
    def status(self) -> str:
        """idle, running, paused, stopped, done, error or released."""
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
        if changes and is_dataclass(self.config):  # validated before anything changes
            self._check_config(validate_config(replace(self.config, **changes)))
        with self._step_lock:
            for key, value in changes.items():
                setattr(self.config, key, value)
            self._on_hparams_changed(changes)
            if changes:
                self.hparam_changes.append((self.step_count, dict(changes)))

    def _check_config(self, config: Any) -> None:
        """Hook: checks that need the stage as well as the config (e.g. prompt lengths vs. the model)."""
        return None

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

    # ------------------------------------------------------------------ memory
    def release(self) -> None:
        """Free the optimizer state, gradients and (RL, DPO) reference and value model.

        History, samples and trained weights stay; `step`, `run` and `save` raise StageError after
        (rlhf_lab.stages.memory says what a finished stage holds). `released_bytes` tells how much
        the stage let go. Returns None, so a notebook cell ending with it prints nothing.

            >>> ppo.step(40); ppo.release()   # ppo.history and ppo.samples() still work
        """
        from rlhf_lab.stages.memory import release_training_state, return_freed_memory

        if self.run_in_flight:
            raise StageBusyError(f"{self.name} has a run in progress; stop() it before release().")
        with self._step_lock:
            self.released_bytes = release_training_state(self)
            self.released, self._status = True, "released"
        return_freed_memory()

    def _check_not_released(self, action: str) -> None:
        if self.released:
            raise StageError(
                f"{self.name} was released (its optimizer state and reference are gone), so it cannot "
                f"{action}. Its history and samples are still here; create a new stage to train more."
            )

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: str | os.PathLike) -> Path:
        """Write a complete checkpoint to `path` atomically (temp folder, manifest, then rename).

        A crash or a full disk during the save leaves the previous checkpoint at `path` intact; after
        a save the one before it is kept as `.<name>.old`, the fallback of `load` (stages.checkpoint).
        `path` must be new, an empty folder or an earlier checkpoint: anything else there is refused
        (CheckpointError), never replaced.
        """
        self._check_not_released("save")
        path = Path(path)
        check_save_target(path)

        def fill(staging: Path) -> None:
            with self._step_lock, quiet_loading():  # no per-shard bars from transformers in a cell or log
                self._save_state(staging)
                meta = {
                    "class": type(self).__name__,
                    "name": self.name,
                    "step_count": self.step_count,
                    "lab_step": self.clock.value,
                    "elapsed_s": self._elapsed,
                    "config": config_to_dict(self.config),
                    "hparam_changes": [
                        [step, config_to_dict(changes)] for step, changes in self.hparam_changes
                    ],
                    "format": FORMAT,
                }
                with open(staging / "history.jsonl", "w", encoding="utf-8") as f:
                    for row in self._rows:
                        f.write(json.dumps(row) + "\n")
                torch.save(rng_state(), staging / "rng.pt")
                _write_json(staging / "stage.json", meta)

        return write_atomically(path, fill)

    @classmethod
    def load(cls, path: str | os.PathLike, **kwargs: Any) -> Stage:
        """Rebuild a stage from `save(path)`; it continues the same run and curve.

        Extra keyword arguments go to the subclass (e.g. a reward callable that cannot be saved).
        Every file is checked against the manifest first; a damaged checkpoint falls back to the
        previous one with a warning, or raises a CheckpointError naming the damaged file.
        """
        path = verified_checkpoint(Path(path))
        meta = json.loads((path / "stage.json").read_text(encoding="utf-8"))
        target = _STAGE_CLASSES.get(meta["class"])
        if target is None:
            raise StageError(f"{path} holds a {meta['class']} checkpoint, which this version does not know.")
        if cls is not Stage and not issubclass(target, cls):
            raise StageError(f"{path} holds a {meta['class']} checkpoint, not a {cls.__name__}.")
        with quiet_loading():
            stage = target._from_checkpoint(path, meta, **kwargs)
        stage.step_count = meta["step_count"]
        stage.hparam_changes = [(step, changes) for step, changes in meta.get("hparam_changes", [])]
        stage._elapsed = meta.get("elapsed_s", 0.0)
        stage.clock.advance_to(meta.get("lab_step", 0))
        with open(path / "history.jsonl", encoding="utf-8") as f:
            stage._rows = [json.loads(line) for line in f if line.strip()]
        set_rng_state(torch.load(path / "rng.pt", weights_only=True))
        return stage

    def export(self, path: str | os.PathLike, **options: Any) -> Path:
        """A plain transformers folder with a model card (rlhf_lab.export): a reward model whose logit
        is the lab's reward, or the policy with any LoRA adapter merged, tokenizer and chat template."""
        from rlhf_lab.export import export_stage

        return export_stage(self, path, **options)

    @abstractmethod
    def _save_state(self, folder: Path) -> None:
        """Write weights (safetensors), optimizer/scheduler state and data the stage needs."""

    @classmethod
    @abstractmethod
    def _from_checkpoint(cls, folder: Path, meta: dict[str, Any], **kwargs: Any) -> Stage:
        """Build the stage from `folder` (config in meta['config']); counters are restored by load()."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} step={self.step_count} status={self.status}>"
