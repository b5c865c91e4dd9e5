"""KL estimators and the controllers that set the KL coefficient beta.

    >>> from rlhf_lab.rl.kl import kl_k1, kl_k3, AdaptiveKLController
    >>> kl_per_token = kl_k1(logprobs, ref_logprobs)          # unbiased, can be negative per sample
    >>> ctl = AdaptiveKLController(beta=0.1, target=6.0, horizon=10_000)
    >>> ctl.update(current_kl=9.0, n_rollouts=64); ctl.value  # beta grows when KL is above target

Both estimators take log-probs of tokens sampled from the policy pi (http://joschu.net/blog/kl-approx.html):
k1 = log pi - log pi_ref (unbiased, high variance), k3 = (r - 1) - log r with r = pi_ref / pi
(unbiased, always >= 0, lower variance). Summed over a response they estimate KL(pi || pi_ref) per sequence.
"""

from __future__ import annotations

from typing import Any

import torch


def kl_k1(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token log-ratio log pi - log pi_ref."""
    return logprobs - ref_logprobs


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token (r - 1) - log r with r = pi_ref / pi: non-negative, unbiased for KL(pi || pi_ref)."""
    log_r = ref_logprobs - logprobs
    return torch.expm1(log_r) - log_r


def kl_estimate(name: str, logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    return {"k1": kl_k1, "k3": kl_k3}[name](logprobs, ref_logprobs)


class FixedKLController:
    """A constant beta (change it by assigning `value`, e.g. through `stage.set(beta=...)`)."""

    def __init__(self, beta: float) -> None:
        self.value = float(beta)

    def update(self, current_kl: float, n_rollouts: int) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "fixed", "value": self.value}


class AdaptiveKLController:
    """Proportional control of beta toward a target KL (Ziegler et al. 2019).

    The error (KL / target - 1) is clipped to +-0.2 so one odd batch cannot swing beta; the
    change per step scales with the rollouts seen relative to `horizon`.
    """

    def __init__(self, beta: float, target: float, horizon: int = 10_000) -> None:
        self.value = float(beta)
        self.target = float(target)
        self.horizon = int(horizon)

    def update(self, current_kl: float, n_rollouts: int) -> None:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_rollouts / self.horizon

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "adaptive", "value": self.value, "target": self.target, "horizon": self.horizon}


KLController = FixedKLController | AdaptiveKLController


def make_kl_controller(beta: float, target_kl: float | None, horizon: int) -> KLController:
    """Adaptive when a target is given, fixed otherwise."""
    if target_kl is None:
        return FixedKLController(beta)
    return AdaptiveKLController(beta, target_kl, horizon)


def kl_controller_from_state(state: dict[str, Any]) -> KLController:
    if state["kind"] == "adaptive":
        return AdaptiveKLController(state["value"], state["target"], state["horizon"])
    return FixedKLController(state["value"])
