"""What one RL step reports: its metric row, per-minibatch statistics and seconds per phase.

    >>> timer = PhaseTimer(stage.last_timings, phase)
    >>> timer.start("generation"); ...; timer.stop()
    >>> step_metrics(per_sample, old_entropy, mask, old_values, returns, stats, ...)

Metric names and meanings are listed in rlhf_lab.metrics.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from rlhf_lab.rl.advantages import explained_variance, masked_mean

# Per-minibatch statistics of the update loop, kept on the device until the loop ends.
UPDATE_STATS = (
    "loss/policy",
    "loss/value",
    "loss/total",
    "policy/entropy",
    "policy/approxkl",
    "policy/clipfrac",
    "policy/ratio",
    "val/clipfrac",
    "train/grad_norm",
)


def step_metrics(
    per_sample: torch.Tensor,
    old_entropy: torch.Tensor,
    mask: torch.Tensor,
    old_values: torch.Tensor | None,
    returns: torch.Tensor | None,
    stats: torch.Tensor,
    components: dict[str, torch.Tensor],
    gold: list[float] | None,
    *,
    beta: float,
    kl_warning: float,
    learning_rate: float,
) -> dict[str, Any]:
    """The step's metric row from the rollout's per-sample numbers and the update loop's `stats`
    ([epochs, minibatches, len(UPDATE_STATS)], averaged here)."""
    scores, kl, kl3, rlhf_reward, lengths, eos = per_sample
    mean_kl = float(kl.mean())
    update = dict(zip(UPDATE_STATS, stats.mean((0, 1)).tolist()))
    metrics: dict[str, Any] = {
        "objective/kl": mean_kl,
        "objective/kl_k3": float(kl3.mean()),
        "objective/scores": float(scores.mean()),
        "objective/rlhf_reward": float(rlhf_reward.mean()),
        "objective/non_score_reward": float((rlhf_reward - scores).mean()),
        "objective/entropy": float((old_entropy * mask).sum(1).mean()),
        "objective/beta": beta,
        "objective/kl_warning": float(mean_kl > kl_warning),
        "response/length": float(lengths.mean()),
        "response/eos_rate": float(eos.mean()),
        "train/learning_rate": learning_rate,
    }
    metrics.update(
        {
            k: v
            for k, v in update.items()
            if old_values is not None or not k.startswith(("val/", "loss/value"))
        }
    )
    if old_values is not None:
        metrics["val/mean"] = float(masked_mean(old_values, mask))
        metrics["val/explained_variance"] = float(explained_variance(old_values, returns, mask))
    for name, values in components.items():
        metrics[f"objective/scores/{name}"] = float(values.mean())
    if gold is not None:
        metrics["objective/gold_scores"] = sum(gold) / len(gold)
    return metrics


def minibatch_stats(stats: torch.Tensor) -> list[dict[str, float]]:
    """One dict per minibatch of the update loop, in order."""
    return [dict(zip(UPDATE_STATS, row.tolist())) for row in stats.flatten(0, 1)]


class PhaseTimer:
    """Seconds per phase of the last step (generation, scoring, forwards, update) for benchmarks.

    `phase[0]` always names the running phase, so an out-of-memory error can say where it happened.
    """

    def __init__(self, out: dict[str, float], phase: list[str]) -> None:
        self.out, self.phase = out, phase
        self.out.clear()
        self._t: float | None = None

    def start(self, name: str) -> None:
        self.stop()
        self.phase[0], self._t = name, time.perf_counter()

    def stop(self) -> None:
        if self._t is not None:
            self.out[self.phase[0]] = time.perf_counter() - self._t
            self._t = None
