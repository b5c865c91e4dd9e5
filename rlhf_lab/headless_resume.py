"""Checkpoints during a headless run, and picking a stopped run up where it stopped.

    checkpoint_every: 50          # in the config: SFT, DPO and RL save every 50 steps, not only at the end

    $ rlhf-lab train config.yaml --resume     # after a crash, a killed job or a pre-empted node

A run writes its config to output_dir/config.yaml before it trains, and each stage's checkpoint to
output_dir/<stage> (atomically: a crash during a save leaves the one before). `--resume` checks that
output_dir holds a run of the same config, loads every stage that has a checkpoint instead of training it
again (a fitted reward model as it is; SFT, DPO or RL with their optimizer, prompt order and random
state) and takes each the rest of its steps. On one process the resumed run ends with the same weights as
one that never stopped. Under N processes every rank loads rank 0's checkpoint and replays its own share
of the prompts to where it was; only the sampling's random state differs from a run that never stopped.

Raising a stage's `steps` and resuming continues a finished run for more steps; any other change to
the config is refused, since the checkpoints would then mix two experiments.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlhf_lab.config_checks import whole_number_setting
from rlhf_lab.errors import ConfigError

# Keys that do not change what is trained: they may differ between a run and its resumption.
MAY_CHANGE = ("checkpoint_every", "log_to", "export", "threads")
POLICY_SECTIONS = ("sft", "dpo", "rl")


def check_checkpoint_every(config: dict[str, Any]) -> None:
    """ConfigError unless `checkpoint_every` is left out or a whole number of steps (at least 1)."""
    if config.get("checkpoint_every") is not None:
        whole_number_setting(config["checkpoint_every"], "checkpoint_every", least=1)


def check_same_run(config: dict[str, Any], saved_config: Path) -> None:
    """ConfigError unless `saved_config` (a run's output_dir/config.yaml) holds `config`, but for the keys
    in MAY_CHANGE and the stages' step counts."""
    import yaml

    if not saved_config.is_file():
        raise ConfigError(
            f"--resume: {saved_config.parent} holds no run to resume (no config.yaml); run without --resume "
            "to start one."
        )
    before = _comparable(yaml.safe_load(saved_config.read_text(encoding="utf-8")) or {})
    now = _comparable(json.loads(json.dumps(config, default=str)))
    changed = sorted(key for key in set(before) | set(now) if before.get(key) != now.get(key))
    if changed:
        raise ConfigError(
            f"--resume: the config differs from the run in {saved_config.parent} in {', '.join(changed)}; "
            "resuming would mix two experiments. Only step counts and "
            f"{', '.join(MAY_CHANGE)} may change: use another output_dir for a new run."
        )


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    config = {key: value for key, value in config.items() if key not in MAY_CHANGE}
    for section in POLICY_SECTIONS:
        if isinstance(config.get(section), dict):
            config[section] = {k: v for k, v in config[section].items() if k != "steps"}
    return config


class RunProgress:
    """output_dir/progress.json: the stages this run has saved. `--resume` loads only those, never a
    checkpoint that an earlier run left in the same folder. Rank 0 writes it; a fresh run starts it empty.

        >>> progress = RunProgress(out, resume=False, writer=True)
        >>> stage.save(out / "sft"); progress.record("sft")
        >>> progress.saved("sft")          # out / "sft" on a --resume, else None
    """

    def __init__(self, out: Path, *, resume: bool, writer: bool) -> None:
        self.path, self.writer = out / "progress.json", writer
        self.stages: list[str] = []
        if resume and self.path.is_file():
            self.stages = json.loads(self.path.read_text(encoding="utf-8"))["saved"]
        self.resumed: dict[str, int] = {}  # stage: steps it had taken when this run picked it up
        if not (resume and self.path.is_file()):  # a resumed run's file already says what it holds
            self._write()

    def saved(self, name: str) -> Path | None:
        folder = self.path.parent / name
        # A crash during a save leaves the checkpoint before it as .<name>.old (stages.checkpoint)
        there = (folder / "stage.json").is_file() or (folder.parent / f".{folder.name}.old").is_dir()
        return folder if name in self.stages and there else None

    def record(self, name: str) -> None:
        if name not in self.stages:
            self.stages.append(name)
            self._write()

    def _write(self) -> None:
        if self.writer:  # the other ranks read it while rank 0 may be writing it
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomically(self.path, json.dumps({"saved": self.stages}))


def write_text_atomically(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path`: a reader (another rank)
    sees the old content or the new, never a half-written or empty file, and a crash leaves the old one."""
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staging.write_text(text, encoding="utf-8")
    os.replace(staging, path)


def run_steps(
    stage: Any,
    steps: int,
    *,
    name: str,
    every: int | None,
    save: Callable[[], Any],
    progress: bool,
    before_chunk: Callable[[], Any] | None = None,
) -> list[dict[str, Any]]:
    """Take `stage` from its step count to `steps`, calling `save` (rank 0's checkpoint) every `every` steps
    and at the end; returns every metric row of the stage, those of a run before a resumption included. A
    resumed stage with no steps left is saved already, so it is not written again. `before_chunk` runs
    before each stretch between checkpoints, where a resumed run starts too (the ranks' reseeding)."""
    start = stage.step_count
    remaining = steps - start
    if remaining < 0:
        raise ConfigError(
            f"{name}.steps is {steps}, but its checkpoint has taken {stage.step_count} steps already: raise "
            "steps, or use another output_dir for a new run."
        )
    while remaining > 0:
        chunk = min(every or remaining, remaining)
        if before_chunk is not None:
            before_chunk()
        stage.step(chunk, progress=progress)
        remaining -= chunk
        if remaining > 0:
            save()
    if stage.step_count > start or start == 0:  # start == 0: a fresh stage, even of 0 steps, is saved
        save()
    return stage.rows


def unwrapped(policy: Any) -> Any:
    """The model a lab's policy is: a LoRA-wrapped one's base model (the adapter's layers sit inside it)."""
    from rlhf_lab.lora import is_peft_model

    return policy.get_base_model() if is_peft_model(policy) else policy
