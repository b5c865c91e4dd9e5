"""Reward normalisation before RL: a gain and a bias fitted once on the starting policy's samples.

    >>> norm = RewardNormalizer()
    >>> norm.fit(first_step_scores)        # scores of responses sampled from the starting policy
    >>> norm(scores)                       # (scores - bias) * gain: mean 0, std 1 on those samples

A reward model's scale is arbitrary (Bradley-Terry only fixes differences), yet the KL penalty
beta * KL is measured against it: the same beta is strong for one reward model and negligible for
the next. OpenAI's lm-human-preferences (Ziegler et al. 2019, `train_policy.py`, "normalize the
reward model") therefore sets a gain and bias so that scores of samples from the initial policy have
mean 0 and standard deviation 1 before PPO. We fit on the first step's rollouts, which come from the
starting policy (the frozen reference), and keep the values fixed afterwards.

A nearly flat reward model (spread below `FLAT_STD`) is not blown up to unit scale: amplifying noise
would make the policy random-walk away from the reference while learning nothing. The gain is
capped at 1 / FLAT_STD and `fit` returns a warning in plain words instead.

Several objectives (a weighted sum or a route between them, rlhf_lab.rl.rewards) get the same treatment
one by one: `ObjectiveNormalizers` rescales each objective that is a reward model before they are
combined, so that a weight means what it says and beta means what it means for one reward model.
Reward functions and gold judges among the objectives keep their own scale.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from rlhf_lab.notices import LabNotice

FLAT_STD = 0.05
"""A raw score spread below this is "nearly flat": two typical samples differ by less than a 51:49
Bradley-Terry preference."""


class FlatRewardWarning(LabNotice):
    """The reward barely separates the policy's samples; RL on it would follow noise."""


class RewardNormalizer:
    """Affine map (score - bias) * gain with mean 0 and std 1 on the samples it was fitted on."""

    def __init__(self) -> None:
        self.bias = 0.0
        self.gain = 1.0
        self.raw_std: float | None = None

    @property
    def fitted(self) -> bool:
        return self.raw_std is not None

    def fit(self, scores: torch.Tensor, name: str | None = None) -> str | None:
        """Fit on raw scores. A nearly flat reward gets a FlatRewardWarning (naming the objective `name`,
        if given); its message is returned too."""
        scores = scores.detach().float().cpu()
        std = float(scores.std(correction=1)) if len(scores) > 1 else 0.0
        self.set(float(scores.mean()), std)
        if std < FLAT_STD:
            message = (
                f"{'This reward model' if name is None else f'The reward model of objective {name!r}'} "
                f"is nearly flat: its scores on the policy's first {len(scores)} samples "
                f"vary by only {std:.4f} (standard deviation). RL would follow noise, so the scores are not "
                "scaled up. Label more pairs or train the reward model longer (rm.fit(...)), then start RL again."
            )
            warnings.warn(message, FlatRewardWarning, stacklevel=3)
            return message
        return None

    def set(self, bias: float, std: float) -> None:
        """Map to (score - bias) / std; a nearly flat std (below FLAT_STD) is not blown up past 1 / FLAT_STD."""
        self.bias, self.raw_std, self.gain = bias, std, 1.0 / max(std, FLAT_STD)

    def reset(self) -> None:
        """Forget the fit (e.g. a new reward model): the next step fits again."""
        self.__init__()

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        return (scores - self.bias) * self.gain

    def state_dict(self) -> dict[str, Any]:
        return {"bias": self.bias, "gain": self.gain, "raw_std": self.raw_std}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.bias, self.gain, self.raw_std = state["bias"], state["gain"], state["raw_std"]


def is_learned_reward(reward: Any) -> bool:
    """True for reward models (a reward-model stage, ensemble, scorer or raw HF classifier), whose
    scale is arbitrary; False for reward functions and gold judges, whose scale means something."""
    from rlhf_lab.reward import RewardEnsemble, RewardModelStage, RewardScorer
    from rlhf_lab.rl.rewards import ModelReward

    return isinstance(reward, (RewardModelStage, RewardEnsemble, RewardScorer, ModelReward))


def learned_objectives(reward: Any) -> list[str]:
    """The names of a weighted or routed reward's objectives that are reward models (`is_learned_reward`);
    empty for any other reward."""
    from rlhf_lab.rl.rewards import CombinedReward

    if not isinstance(reward, CombinedReward):
        return []
    return [name for name, (part, _) in reward.parts.items() if is_learned_reward(part.fn)]


class ObjectiveNormalizers:
    """One `RewardNormalizer` per objective that is a reward model, each fitted on its first scores.

        >>> norms = ObjectiveNormalizers()
        >>> out = norms(reward, reward(prompts, responses), prompts)   # reward: a WeightedReward
        >>> out.components["helpful"]        # mean 0, std 1 on the first samples; out.scores recombined

    The RL stage fits it (`fit`) on the starting policy's samples first, as it fits `RewardNormalizer` on
    one reward model, and keeps the fits afterwards; a call fits any objective not fitted yet on its scores.
    """

    def __init__(self) -> None:
        self.normalizers: dict[str, RewardNormalizer] = {}

    def fit(self, reward: Any, output: Any) -> None:
        """Fit each learned objective of `reward` not fitted yet on its scores in `output` (a RewardOutput)."""
        for name in self.unfitted(reward):
            self.normalizers[name] = RewardNormalizer()
            self.normalizers[name].fit(output.components[name], name=name)

    def unfitted(self, reward: Any) -> list[str]:
        """The learned objectives of `reward` that have no fit (pinned or fitted) yet."""
        return [name for name in learned_objectives(reward) if name not in self.fitted]

    def __call__(self, reward: Any, output: Any, prompts: list[str]) -> Any:
        """`output` (a RewardOutput of `reward`) with each learned objective rescaled and the total
        recombined; unchanged when `reward` has no learned objectives."""
        from rlhf_lab.rl.rewards import RewardOutput

        names = learned_objectives(reward)
        if not names:
            return output
        components = dict(output.components)
        for name in names:
            normalizer = self.normalizers.setdefault(name, RewardNormalizer())
            if not normalizer.fitted:
                normalizer.fit(components[name], name=name)
            components[name] = normalizer(components[name])
        return RewardOutput(reward.combine(components, prompts), components)

    @property
    def fitted(self) -> list[str]:
        return [name for name, normalizer in self.normalizers.items() if normalizer.fitted]

    def reset(self) -> None:
        """Forget every fit (e.g. new reward models): the next call fits again."""
        self.normalizers.clear()

    def state_dict(self) -> dict[str, Any]:
        return {name: normalizer.state_dict() for name, normalizer in self.normalizers.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.normalizers = {}
        for name, values in state.items():
            self.normalizers[name] = RewardNormalizer()
            self.normalizers[name].load_state_dict(values)


def scaled_part(reward: Any, reward_source: Any, wanted: bool | None) -> str | None:
    """What the RL stage rescales (`wanted`: RLConfig.normalize_reward): "objectives" (each reward model
    among several, before they are combined), "total" (one reward model, or any reward with True), or None."""
    if wanted is None and learned_objectives(reward):
        return "objectives"
    return "total" if (is_learned_reward(reward_source) if wanted is None else wanted) else None


def pinned(pair: dict[str, float]) -> RewardNormalizer:
    """A normalizer fixed at (score - bias) / std: a `reward_scale` entry (RLConfig)."""
    normalizer = RewardNormalizer()
    normalizer.set(float(pair["bias"]), float(pair["std"]))
    return normalizer


def pin_scale(stage: Any, scale: dict[str, Any] | None) -> None:
    """Put `scale` (RLConfig.reward_scale) into the RL stage's normalizers, or say what does not fit."""
    if not scale:
        return
    wanted = stage.config.normalize_reward
    if wanted is False:
        raise ValueError(
            "reward_scale pins a scale that normalize_reward=False switches off; drop one of them."
        )
    if set(scale) == {"bias", "std"}:  # the total's scale: one reward model, or normalize_reward=True
        if scaled_part(stage.reward, stage.reward_source, wanted) != "total":
            raise ValueError(
                'reward_scale {"bias", "std"} pins one reward model\'s scale; this reward is not one reward '
                "model (name each reward-model objective instead)."
            )
        stage.normalizer = pinned(scale)
        return
    if wanted:
        raise ValueError(
            'normalize_reward=True rescales the total: give reward_scale as one {"bias", "std"} pair.'
        )
    learned = learned_objectives(stage.reward)
    if unknown := sorted(set(scale) - set(learned)):
        raise ValueError(
            f"reward_scale names {unknown}, which are not reward-model objectives of this reward "
            f"(those are: {learned or 'none'})."
        )
    for name, pair in scale.items():
        stage.objective_normalizers.normalizers[name] = pinned(pair)


def fit_sample(
    first: Any,
    n_fresh: int | None,
    prompts: list[str],
    prompt_tokens: list[list[int]],
    answer: Callable[[list[list[int]]], list[str]],
    reward: Callable[[list[str], list[str]], Any],
    chunk: int,
) -> Any:
    """The scores a reward's scale is fitted on, every rank's (all ranks then share one scale).

    `first` (a RewardOutput) holds the first step's scores. With `n_fresh` = N the policy instead answers
    N more prompts, `chunk` at a time: this rank's share of N, one answer per prompt in the prompts'
    order (wrapping), each scored by `reward`. `answer` samples responses for prompt token lists.
    """
    from rlhf_lab.rl.distributed import gather_across_ranks, world_size
    from rlhf_lab.rl.rewards import RewardOutput, check_finite_scores

    if n_fresh is not None:
        rows = [i % len(prompts) for i in range(-(-n_fresh // world_size()))]
        parts = []
        for start in range(0, len(rows), chunk):
            some = [prompts[i] for i in rows[start : start + chunk]]
            responses = answer([prompt_tokens[i] for i in rows[start : start + chunk]])
            parts.append(reward(some, responses))
            check_finite_scores(parts[-1].scores, some, responses)
        first = RewardOutput(
            torch.cat([part.scores for part in parts]),
            {name: torch.cat([part.components[name] for part in parts]) for name in parts[0].components},
        )
    return RewardOutput(
        gather_across_ranks(first.scores),
        {name: gather_across_ranks(scores) for name, scores in first.components.items()},
    )


class OnOneScale:
    """A reward rescaled to mean 0 and std 1 on given samples, so that two reward models can be added or
    routed between: each one's scale is arbitrary (Bradley-Terry fixes only differences), so a raw sum
    weights the one with the wider spread more, whatever the weights say. The RL stage already rescales
    each reward model among its objectives on its first step's samples; `OnOneScale` fixes the scale on
    samples you choose instead, e.g. the same SFT answers for several runs that should share one scale.

        >>> helpful = OnOneScale(helpful_rm, prompts, sft_answers)  # fitted once, on the SFT answers
        >>> harmless = OnOneScale(safety_rm, prompts, sft_answers)
        >>> lab.ppo(prompts, reward={"helpful": helpful, "harmless": (harmless, 0.5)})
    """

    def __init__(self, reward: Any, prompts: list[str], responses: list[str]) -> None:
        from rlhf_lab.rl.rewards import as_reward

        self.reward = as_reward(reward)
        self.normalizer = RewardNormalizer()
        self.normalizer.fit(self.reward(list(prompts), list(responses)).scores)

    def __call__(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        return self.normalizer(self.reward(prompts, responses).scores)
