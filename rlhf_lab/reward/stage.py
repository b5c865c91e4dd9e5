"""The reward-model stage: learn a scalar r(prompt, response) from pairwise preferences.

    >>> from rlhf_lab.reward import RewardModelStage
    >>> rm = RewardModelStage(model, tokenizer, store, learning_rate=1e-3)
    >>> rm.fit()                                   # train on what the store holds now
    >>> rm.evaluate()["accuracy"]                  # held-out pairwise accuracy, AUC, ECE, ...
    >>> rm(["Write a review."], ["Great film!"])   # the reward callable RL stages use: tensor [n]
    >>> labeller.add(...); rm.fit()                # incremental: keeps weights, a short pass

Loss (`loss=`):
- "bradley_terry": each pair on its own, BCE(sigmoid(r_c - r_r - margin), target). With a hard
  label (target 1) and no margin this is -log sigmoid(r_c - r_r); soft labels (the fraction of
  annotators preferring `chosen`) and Likert margins plug into the same formula.
- "ranking": the k(k-1)/2 pairs of one ranked item are one training unit, their losses averaged
  (InstructGPT), so an item of 9 responses weighs as much as an item of 2.

Data: a PreferenceStore (anything with `.pairs(...)`, re-read at every `fit()`), or pairs as a
list of dicts/objects or a DataFrame with prompt, chosen, rejected and optional target, margin,
item_id. Prompts are split into train/val/test by a hash of the prompt text and the assignment is
kept, so a prompt never moves between splits when new labels arrive.

Scoring (the text layout for causal LMs and encoders) is `rlhf_lab.reward.scorer.RewardScorer`.

Metrics per step: `loss/rm`, `rm/accuracy`, `rm/margin`, `train/learning_rate`, `train/grad_norm`,
`train/epoch`, `rm/n_pairs`; `fit()` and `evaluate()` add `rm/val_*` rows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf_lab.errors import StageBusyError, StageError
from rlhf_lab.hparams import whole_number
from rlhf_lab.optim import adamw, clip_gradients, decay_groups, optimizer_params
from rlhf_lab.progress import progress_bar
from rlhf_lab.reward import evaluation
from rlhf_lab.reward.checkpoint import load_rm_stage, save_rm_state
from rlhf_lab.reward.config import WARM_START_MAX_EPOCHS, RMConfig
from rlhf_lab.reward.ensemble import RewardEnsemble
from rlhf_lab.reward.evaluation import gold_accuracy, ranking_spearman
from rlhf_lab.reward.losses import pairwise_loss
from rlhf_lab.reward.pairs import PairRecord, no_pairs_message, prompt_unit, read_pairs
from rlhf_lab.reward.scorer import PairScoring, RewardScorer, as_lists
from rlhf_lab.stages.base import Stage, StepClock, make_config

SMALL_DATA_PROMPTS = 100  # below this many prompts the default split is 90/10 (no test set)


# ---------------------------------------------------------------------- the stage


def linear_schedule_share(step: int, total: int, warmup_ratio: float) -> float:
    """The share of the peak learning rate at 0-based `step` of `total`: linear warm-up, then linear decay.

    >>> [round(linear_schedule_share(i, 10, 0.2), 3) for i in range(10)]
    [0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125]
    """
    warm = max(1, int(warmup_ratio * total))
    if step < warm:
        return (step + 1) / warm
    return (total - step) / max(1, total - warm)


class RewardModelStage(PairScoring, Stage):
    """Trains a reward model on preference pairs; the stage itself is the reward callable."""

    name = "rm"
    mutable_hparams = ("learning_rate", "batch_size")

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        data: Any,
        config: RMConfig | None = None,
        *,
        clock: StepClock | None = None,
        checkpoint_every: int | None = None,
        checkpoint_dir: str | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(
            make_config(config, RMConfig, overrides),
            clock=clock,
            checkpoint_every=checkpoint_every,
            checkpoint_dir=checkpoint_dir,
        )
        self.model = model
        self.tokenizer = tokenizer
        self.source = data
        self.scorer = RewardScorer(
            model,
            tokenizer,
            max_length=self.config.max_length,
            batch_size=self.config.eval_batch_size,
            mixed_precision=self.config.mixed_precision,
        )
        self.optimizer = self._make_optimizer()
        # Kept (on CPU) so that fit(warm_start=False) can start again from the backbone.
        self._initial_state: dict[str, torch.Tensor] | None = {
            k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
        }
        self._initial_offset = 0.0
        self.pretrained: str | None = (
            None  # what the initial weights learned from (rlhf_lab.reward.pretrained)
        )
        self.pretrained_task: str | None = None  # the bundled task of those weights, if any
        self.fits: list[dict[str, Any]] = []  # each fit(): its steps, warm_start and training pairs
        self.pairs: list[PairRecord] = []
        self.split_of: dict[str, str] = {}  # prompt -> "train" | "val" | "test", never reassigned
        self._units: list[list[int]] | None = None  # training units: lists of pair indices
        self.samples_seen = 0  # units consumed since the data was last read
        self.data_version = 0

    # ------------------------------------------------------------------ data
    def refresh(self) -> None:
        """Re-read the data source, assign splits to new prompts and restart the data order."""
        with self._step_lock:
            cfg = self.config
            self.pairs = read_pairs(self.source, ties=cfg.ties, both_bad=cfg.both_bad, soft=cfg.soft_labels)
            self._assign_splits()
            self._build_units()
            self.samples_seen = 0
            self.data_version += 1

    def _assign_splits(self) -> None:
        seed = self.config.split_seed
        new = sorted({p.prompt for p in self.pairs} - set(self.split_of), key=lambda s: prompt_unit(s, seed))
        n_prompts = len(self.split_of) + len(new)
        fractions = self.config.split or (
            (0.8, 0.1, 0.1) if n_prompts >= SMALL_DATA_PROMPTS else (0.9, 0.1, 0.0)
        )
        _, val, test = (f / sum(fractions) for f in fractions)
        for prompt in new:
            u = prompt_unit(prompt, seed)
            self.split_of[prompt] = "val" if u < val else "test" if u < val + test else "train"
        # Hashing can leave a small dataset without validation prompts; give it one (a new one,
        # so nothing already trained on moves).
        if val > 0 and new and n_prompts >= 2 and "val" not in self.split_of.values():
            self.split_of[new[0]] = "val"

    def _build_units(self) -> None:
        train = [i for i, p in enumerate(self.pairs) if self.split_of.get(p.prompt) == "train"]
        if self.config.loss == "ranking":
            groups: dict[str, list[int]] = {}
            for i in train:
                groups.setdefault(self.pairs[i].item, []).append(i)
            self._units = list(groups.values())
        else:
            self._units = [[i] for i in train]

    def split_pairs(self, split: str) -> list[PairRecord]:
        """The pairs of one split: "train", "val" or "test"."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        return [p for p in self.pairs if self.split_of.get(p.prompt) == split]

    def _epoch_order(self, epoch: int) -> list[int]:
        seed = self.config.seed * 1_000_003 + self.data_version * 10_007 + epoch
        return torch.randperm(len(self._units), generator=torch.Generator().manual_seed(seed)).tolist()

    def _next_units(self, count: int) -> list[list[int]]:
        n, seen, out = len(self._units), self.samples_seen, []
        while len(out) < count:
            epoch, offset = divmod(seen, n)
            take = min(count - len(out), n - offset)
            out.extend(self._units[j] for j in self._epoch_order(epoch)[offset : offset + take])
            seen += take
        return out

    # ------------------------------------------------------------------ training
    def _make_optimizer(self) -> torch.optim.Optimizer:
        return adamw(
            decay_groups(self.model.parameters(), self.config.weight_decay), lr=self.config.learning_rate
        )

    def _on_hparams_changed(self, changes: dict[str, Any]) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.learning_rate

    def _pair_rewards(self, pairs: Sequence[PairRecord]) -> tuple[torch.Tensor, torch.Tensor]:
        """r(chosen), r(rejected) with gradients, each distinct text scored once."""
        texts: dict[tuple[str, str], int] = {}
        for p in pairs:
            texts.setdefault((p.prompt, p.chosen), len(texts))
            texts.setdefault((p.prompt, p.rejected), len(texts))
        keys = list(texts)
        rewards = self.scorer.forward([k[0] for k in keys], [k[1] for k in keys])
        chosen = torch.tensor([texts[(p.prompt, p.chosen)] for p in pairs], device=rewards.device)
        rejected = torch.tensor([texts[(p.prompt, p.rejected)] for p in pairs], device=rewards.device)
        return rewards[chosen], rewards[rejected]

    def loss_on(
        self, pairs: Sequence[PairRecord], r_chosen: torch.Tensor, r_rejected: torch.Tensor
    ) -> torch.Tensor:
        """The configured loss for `pairs` given their rewards."""
        device = r_chosen.device
        target = torch.tensor([p.target for p in pairs], dtype=torch.float32, device=device)
        margin = None
        if self.config.use_margin:
            margin = torch.tensor([p.margin for p in pairs], dtype=torch.float32, device=device)
        groups = None
        if self.config.loss == "ranking":
            ids = {item: j for j, item in enumerate(dict.fromkeys(p.item for p in pairs))}
            groups = torch.tensor([ids[p.item] for p in pairs], device=device)
        return pairwise_loss(r_chosen, r_rejected, target, margin, groups)

    def _train_step(self) -> dict[str, Any]:
        if self._units is None:
            self.refresh()
        if not self._units:
            raise StageError("The reward model has no training pairs yet: label some pairs, then fit().")
        units = self._next_units(self.config.batch_size)
        pairs = [self.pairs[i] for unit in units for i in unit]

        self.model.train()
        r_chosen, r_rejected = self._pair_rewards(pairs)
        loss = self.loss_on(pairs, r_chosen, r_rejected)
        self.check_finite(loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_gradients(optimizer_params(self.optimizer), self.config.max_grad_norm)
        self.optimizer.step()
        self.samples_seen += len(units)

        margins = (r_chosen - r_rejected).detach().cpu().numpy()
        return {
            "loss/rm": loss.item(),
            "rm/accuracy": evaluation.pairwise_accuracy(margins, [p.target for p in pairs]),
            "rm/margin": float(margins.mean()),
            "train/learning_rate": self.optimizer.param_groups[0]["lr"],
            "train/grad_norm": float(grad_norm),
            "train/epoch": self.samples_seen / len(self._units),
            "rm/n_pairs": sum(len(u) for u in self._units),
        }

    @property
    def trained(self) -> bool:
        """False while the scores come from a random head: no fit() yet, no pre-trained weights, and a
        backbone whose head was newly initialised (rlhf_lab.models.presets.load_reward_backbone)."""
        return bool(
            self.step_count or self.pretrained or not getattr(self.model, "reward_head_is_new", False)
        )

    def fit(
        self,
        epochs: int | None = None,
        max_steps: int | None = None,
        warm_start: bool = True,
        progress: bool | None = None,
    ) -> dict[str, Any]:
        """Train on the data source's current contents; returns a summary with held-out metrics.

        `warm_start=True` keeps the current weights and makes `warm_start_steps` optimizer steps (new
        labels top up a trained or pre-trained model); `warm_start=False` restarts from the initial
        weights (the backbone's, or the pre-trained ones) for `steps` steps. `epochs` or `max_steps`
        override the schedule. Held-out prompts stay held out either way. A progress bar appears once
        the fit has taken a couple of seconds (`progress=True`: at once, `False`: never).
        """
        # epochs=0 must not fall back to the configured schedule (`epochs or ...` below).
        epochs = None if epochs is None else whole_number(epochs, "fit(epochs)", minimum=1)
        max_steps = None if max_steps is None else whole_number(max_steps, "fit(max_steps)", minimum=1)
        self.raise_if_error()
        if self.running:
            raise StageBusyError(
                f"{self.name} is running in the background; pause() or stop() it before fit()."
            )
        started = time.perf_counter()
        fresh = not warm_start or (self.step_count == 0 and not self.pretrained)
        if not warm_start:
            self._reset_weights()
        self.refresh()
        if not self._units:
            raise StageError(no_pairs_message(self.config))
        cfg = self.config
        per_epoch = math.ceil(len(self._units) / cfg.batch_size)
        n_epochs = epochs or (cfg.epochs if fresh else cfg.warm_start_epochs)
        # A warm fit tops up: at most WARM_START_MAX_EPOCHS passes, so 16 new labels are learned, not memorised.
        warm = min(cfg.warm_start_steps, WARM_START_MAX_EPOCHS * per_epoch)
        total = n_epochs * per_epoch if n_epochs else (cfg.steps if fresh else warm)
        total = total if max_steps is None else min(max_steps, total)
        peak_lr = cfg.learning_rate if fresh else cfg.warm_lr
        for group in self.optimizer.param_groups:  # restored by _on_hparams_changed at the end
            group["lr"] = peak_lr
        has_val = bool(self.split_pairs("val"))

        bar = progress_bar(total, "rm fit", show=progress)
        steps, best, best_state, stale, stopped_early = 0, -1.0, None, 0, False
        try:
            while steps < total:
                if cfg.schedule == "linear":
                    for group in self.optimizer.param_groups:
                        group["lr"] = peak_lr * linear_schedule_share(steps, total, cfg.warmup_ratio)
                row = self.step(1, progress=False)[0]
                steps += 1
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss/rm']:.3f}")
                if self.config.early_stopping and has_val and (steps % per_epoch == 0 or steps == total):
                    accuracy = self.evaluate("val", log=False)["accuracy"]
                    if accuracy > best:
                        best, stale = accuracy, 0
                        best_state = {
                            k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()
                        }
                    else:
                        stale += 1
                    if stale >= self.config.patience and best_state is not None:
                        self.model.load_state_dict(best_state)
                        stopped_early = True
                        break
        finally:
            bar.close(finished=True)
            self._on_hparams_changed({})
        if self.config.center_rewards:
            self.scorer.offset = self._mean_training_reward()
        held_out = self.evaluate("val") if has_val else {}
        self.fits.append({"steps": steps, "warm_start": not fresh, "pairs": sum(len(u) for u in self._units)})
        return {
            "steps": steps,
            "epochs": self.samples_seen / len(self._units),
            "seconds": time.perf_counter() - started,
            "warm_start": not fresh,
            "stopped_early": stopped_early,
            "n_train_pairs": sum(len(u) for u in self._units),
            "n_val_pairs": len(self.split_pairs("val")),
            "n_test_pairs": len(self.split_pairs("test")),
            **{
                f"val_{k}": v for k, v in held_out.items() if k != "split" and not isinstance(v, pd.DataFrame)
            },
        }

    def _reset_weights(self) -> None:
        if self._initial_state is None:
            raise StageError(
                "This stage was loaded from a checkpoint and has no initial weights to restart from; "
                "build a new RewardModelStage on a fresh backbone instead."
            )
        with self._step_lock:
            self.model.load_state_dict(self._initial_state)
            self.optimizer = self._make_optimizer()
            self.scorer.offset = self._initial_offset

    def _mean_training_reward(self, limit: int = 512) -> float:
        seen = list(
            dict.fromkeys((p.prompt, r) for p in self.split_pairs("train") for r in (p.chosen, p.rejected))
        )
        if not seen:
            return self.scorer.offset
        seen = seen[:: max(1, len(seen) // limit)]
        with self._step_lock:
            return float(self.scorer.raw_scores([s[0] for s in seen], [s[1] for s in seen]).mean())

    # ------------------------------------------------------------------ the reward callable
    def __call__(
        self, prompts: str | Sequence[str], responses: str | Sequence[str], batch_size: int | None = None
    ) -> torch.Tensor:
        """Rewards for (prompt, response) pairs: float32 CPU tensor of shape [n], no gradients.

        One prompt with several responses is broadcast. Safe to call while another stage runs.
        """
        with self._step_lock:
            return self.scorer(prompts, responses, batch_size)

    def encode(self, prompts: str | Sequence[str], responses: str | Sequence[str]) -> dict[str, torch.Tensor]:
        """The model inputs the reward is read from (an exported model's logits on them = `self(...)`)."""
        return self.scorer.encode(*as_lists(prompts, responses))

    # ------------------------------------------------------------------ evaluation
    def evaluate(
        self, split: str = "val", *, pairs: Any = None, gold: Any = None, log: bool = True
    ) -> dict[str, Any]:
        """Held-out metrics: accuracy (with its 95% interval), AUC, ECE + reliability table, loss,
        margins of right/wrong pairs, Spearman against rankings (items with 3+ responses), accuracy
        against a `gold` judge (anything with `.score(prompt, response)`) and the store's agreement ceiling.

        `pairs` evaluates on given pairs instead of a split, e.g. the fixed bundled held-out set
        `rlhf_lab.bundled.heldout_pairs(task)` (gold-labelled, shared by every evaluation). With
        `log=True` validation numbers are also added to `history` as an `rm/val_*` row.
        """
        if pairs is not None:
            pairs, split = read_pairs(pairs), "given"
        else:
            if self._units is None:
                self.refresh()
            pairs = self.split_pairs(split)
        result: dict[str, Any] = {"split": split}
        if pairs:
            texts = list(dict.fromkeys((p.prompt, r) for p in pairs for r in (p.chosen, p.rejected)))
            with self._step_lock:
                raw = self.scorer.raw_scores([t[0] for t in texts], [t[1] for t in texts])
            reward = dict(zip(texts, raw.tolist()))
            r_c = torch.tensor([reward[(p.prompt, p.chosen)] for p in pairs])
            r_r = torch.tensor([reward[(p.prompt, p.rejected)] for p in pairs])
            targets = np.array([p.target for p in pairs])
            result.update(evaluation.pair_metrics((r_c - r_r).numpy(), targets, self.config.calibration_bins))
            result["loss"] = float(self.loss_on(pairs, r_c, r_r))
            result["spearman"] = ranking_spearman(pairs, reward)
            if gold is not None:
                result["gold_accuracy"] = gold_accuracy(pairs, (r_c - r_r).numpy(), gold)
        else:
            result.update({"n_pairs": 0, "accuracy": float("nan")})
        result["agreement_ceiling"] = evaluation.agreement_ceiling(self.source)
        if log and split in ("val", "given") and pairs:
            self._log_row(
                {
                    "rm/val_accuracy": result["accuracy"],
                    "rm/val_auc": result["auc"],
                    "rm/val_ece": result["ece"],
                    "rm/val_loss": result["loss"],
                    **({"rm/gold_accuracy": result["gold_accuracy"]} if "gold_accuracy" in result else {}),
                    **(
                        {"rm/agreement_ceiling": result["agreement_ceiling"]}
                        if result["agreement_ceiling"] is not None
                        else {}
                    ),
                }
            )
        return result

    def _log_row(self, metrics: dict[str, Any]) -> None:
        """Add an evaluation row to history and tell subscribers (no optimisation step is taken)."""
        row = {
            "stage": self.name,
            "step": self.step_count,
            "lab_step": self.clock.value,
            "wall_time": time.time(),
            "elapsed_s": self._elapsed,
            **{k: float(v) for k, v in metrics.items()},
        }
        self._publish(row)

    # ------------------------------------------------------------------ ensembles
    @classmethod
    def ensemble(
        cls,
        n: int,
        build: Callable[[int], tuple[PreTrainedModel, PreTrainedTokenizerBase]],
        data: Any,
        config: RMConfig | None = None,
        *,
        clock: StepClock | None = None,
        k: float = 1.0,
        **overrides: Any,
    ) -> RewardEnsemble:
        """`n` reward models on the same data and split, each with its own seed (head init, data order).

        `build(seed) -> (model, tokenizer)`, e.g. `lab.new_reward_backbone`.
        """
        base = make_config(config, RMConfig, overrides)
        members = []
        for i in range(n):
            model, tokenizer = build(base.seed + i)
            members.append(cls(model, tokenizer, data, replace_seed(base, base.seed + i), clock=clock))
        return RewardEnsemble(members, k=k)

    # ------------------------------------------------------------------ checkpoints
    def _save_state(self, folder: Path) -> None:
        save_rm_state(self, folder)

    @classmethod
    def _from_checkpoint(
        cls,
        folder: Path,
        meta: dict[str, Any],
        *,
        data: Any = None,
        device: str | torch.device | None = None,
        clock: StepClock | None = None,
        **kwargs: Any,
    ) -> RewardModelStage:
        """Rebuild from a checkpoint; `data=store` re-attaches a live store for the next fit()."""
        return load_rm_stage(cls, folder, meta, data=data, device=device, clock=clock, **kwargs)


def replace_seed(config: RMConfig, seed: int) -> RMConfig:
    return make_config(config, RMConfig, {"seed": seed})
