"""A reward model pre-trained on a bundled task's rated pairs, cached, to fine-tune on a room's labels.

    >>> rm = lab.reward_model(pretrained="positive_review")   # trains once (cached), then loads
    >>> rm.evaluate(pairs=heldout_pairs("positive_review"))["accuracy"]
    >>> labeller.add(...); rm.fit()                            # warm start: a few steps on your labels

A room labels tens of pairs in a session; a reward model needs hundreds to learn anything. So a lab
can start from a reward model trained on the 1,800 bundled pairs (three simulated crowd raters' votes
as soft labels, `rlhf_lab.bundled.crowd_pairs`) and fine-tune it on the participants' own labels,
which then visibly move it. The weights are cached under $RLHF_LAB_CACHE (default
~/.cache/rlhf_lab) by a key of the backbone, task, data and settings, so a lab pays the training once.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from rlhf_lab.bundled import crowd_pairs
from rlhf_lab.models.presets import quiet_loading
from rlhf_lab.models.smollm2 import cache_root
from rlhf_lab.reward.config import RMConfig


def _cache_key(
    spec: str, task: str, pairs: list[dict[str, Any]], config: Any, seed: int, model: Any, tokenizer: Any
) -> str:
    """Everything the cached weights depend on. The backbone's config and the tokenizer's vocabulary are in
    it because a preset's name can outlive its shapes: weights cached for another vocabulary would not load
    (or worse, would load into different tokens)."""
    digest = hashlib.sha256()
    settings = {k: v for k, v in asdict(config).items() if k not in ("eval_batch_size", "calibration_bins")}
    shape = {
        k: v for k, v in model.config.to_dict().items() if k not in ("_name_or_path", "transformers_version")
    }
    backbone = [shape, sorted(tokenizer.get_vocab().items())]
    digest.update(
        json.dumps([spec, task, seed, settings, pairs, backbone], sort_keys=True, default=str).encode()
    )
    return digest.hexdigest()[:20]


PRETRAIN_PASSES = 4 / 3
"""Passes over the bundled pairs when pre-training (at the stage's batch size, learning rate warming up over
the first 10% of steps, then decaying linearly). Chosen on a validation split of the bundled pairs
(bench/rm_pretraining.py; bench/README.md): MiniLM at lr 1e-4, batch 8 reached 0.72-0.74 accuracy vs gold
after 4/3 passes on each of three seeds, against 0.67 after 0.9 passes and 0.34-0.73 after 0.45 at a
constant rate."""


def pretraining_steps(n_pairs: int, batch_size: int) -> int:
    """Optimizer steps of the pre-training: PRETRAIN_PASSES over `n_pairs` at `batch_size`."""
    return max(1, math.ceil(PRETRAIN_PASSES * n_pairs / batch_size))


def pretrain_on_bundled(
    stage_cls: type, build: Any, task: str, data: Any, *, spec: str, seed: int, **config: Any
):
    """A `stage_cls` (RewardModelStage) on `data`, starting from weights pre-trained on `task`'s bundled pairs.

    `build(seed) -> (model, tokenizer)` makes a fresh backbone. The pre-training uses the stage's own
    settings (learning rate, batch size) for `pretraining_steps` steps on all bundled pairs (no validation
    split: the bundled held-out set on test prompts is the evaluation). Returns the stage whose initial
    weights (what `fit(warm_start=False)` restarts from) are the pre-trained ones.
    """
    model, tokenizer = build(seed)
    pairs = crowd_pairs(task)
    batch_size = config.get("batch_size", RMConfig.batch_size)
    # Pre-training is off the lab's clock and uses every bundled pair (the held-out set is separate).
    settings = {k: v for k, v in config.items() if k != "clock"} | {
        "split": [1.0, 0.0, 0.0],
        "steps": pretraining_steps(len(pairs), batch_size),
        "schedule": "linear",
    }
    probe = stage_cls(model, tokenizer, pairs, **settings)
    key = _cache_key(spec, task, pairs, probe.config, seed, model, tokenizer)
    folder = cache_root() / "reward_pretrained" / key
    weights = folder / "model.safetensors"
    if weights.exists() and (folder / "state.json").exists():
        model.load_state_dict(
            load_file(str(weights), device=str(next(model.parameters()).device)), strict=False
        )
        offset = json.loads((folder / "state.json").read_text())["offset"]
    else:
        with torch.random.fork_rng(devices=[]):  # a cold cache must not change what the lab draws next
            probe.fit(warm_start=False, progress=True)
        offset = probe.scorer.offset
        _save_atomically(folder, model, offset)
    stage = stage_cls(model, tokenizer, data, **config)  # snapshots the pre-trained weights as initial
    stage.pretrained = f"{len(pairs)} bundled {task} pairs (3 simulated crowd raters)"
    stage.pretrained_task = task
    stage.scorer.offset = stage._initial_offset = offset
    return stage


def _save_atomically(folder: Path, model: torch.nn.Module, offset: float) -> None:
    """Write into a temporary sibling folder, then rename: a crash never leaves half a cache entry."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    with quiet_loading():  # no "Writing model shards" bar in a notebook cell
        model.save_pretrained(tmp, safe_serialization=True)  # transformers writes tied weights once
    (tmp / "state.json").write_text(json.dumps({"offset": offset}))
    try:
        os.replace(tmp, folder)
    except OSError:  # another process cached it first: theirs is as good as ours
        shutil.rmtree(tmp, ignore_errors=True)
