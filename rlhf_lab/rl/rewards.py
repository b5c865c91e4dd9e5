"""Reward adapters: whatever the user passes as `reward=` becomes one `Reward` with one output type.

    >>> from rlhf_lab.rl.rewards import as_reward, RoutedReward, WeightedReward
    >>> as_reward(rm_stage)                                   # rm(prompts, responses) -> tensor
    >>> as_reward(lambda prompts, responses: [len(r) for r in responses])     # plain Python
    >>> as_reward({"helpful": (rm, 1.0), "brevity": (short, 0.3)})           # weighted objectives
    >>> RoutedReward({"helpful": rm_h, "harmless": rm_s}, route=pick)          # one objective per prompt
    >>> as_reward(ModelReward(model, tokenizer))              # a raw HF sequence classifier

Every adapter returns `RewardOutput(scores, components)`: scores (N,) float32 on CPU, plus one
score tensor per named objective (logged as `objective/scores/<name>`). User functions are
checked: an exception, a wrong shape or a NaN is reported as a `RewardError` naming the sample
that caused it, so the stage pauses with something the user can act on.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rlhf_lab.chat import format_conversation
from rlhf_lab.device import autocast_for
from rlhf_lab.errors import StageError
from rlhf_lab.notices import LabNotice


class RewardError(StageError):
    """A reward function failed or returned something unusable; the message names the sample."""


@dataclass
class RewardOutput:
    scores: torch.Tensor
    components: dict[str, torch.Tensor] = field(default_factory=dict)


def _sample_text(prompt: str, response: str, limit: int = 300) -> str:
    def cut(text: str) -> str:
        return text if len(text) <= limit else text[:limit] + "..."

    return f"prompt={cut(prompt)!r}, response={cut(response)!r}"


def _to_scores(value: Any, n: int, name: str) -> torch.Tensor:
    if isinstance(value, RewardOutput):  # a Reward (e.g. ModelReward) used as one objective
        value = value.scores
    if isinstance(value, torch.Tensor):
        tensor = value.detach().float().cpu()
    else:
        try:
            tensor = torch.as_tensor(np.asarray(value, dtype=np.float64), dtype=torch.float32)
        except (TypeError, ValueError) as exc:
            raise RewardError(
                f"reward {name!r} returned {type(value).__name__}, which is not a list of numbers; "
                "return one float per response."
            ) from exc
    if tensor.dim() == 2 and tensor.shape[1] == 1:  # (N, 1) logits from a sequence classifier
        tensor = tensor[:, 0]
    if tensor.shape != (n,):
        raise RewardError(
            f"reward {name!r} returned shape {tuple(tensor.shape)} for {n} responses; "
            "return one float per response (a list or a 1-D tensor of length N)."
        )
    return tensor


class CallableReward:
    """Wraps `fn(prompts, responses) -> list[float] | tensor` with the checks described above."""

    def __init__(self, fn: Callable[[list[str], list[str]], Any], name: str | None = None) -> None:
        if not callable(fn):
            raise TypeError(
                f"reward must be callable as reward(prompts, responses), got {type(fn).__name__}."
            )
        self.fn = fn
        self.name = name or getattr(fn, "__name__", type(fn).__name__)

    def scores(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        try:
            value = self.fn(prompts, responses)
        except Exception as exc:
            raise self._locate_failure(prompts, responses, exc) from exc
        scores = _to_scores(value, len(responses), self.name)
        bad = (~torch.isfinite(scores)).nonzero().flatten()
        if len(bad):
            i = int(bad[0])
            raise RewardError(
                f"reward {self.name!r} returned {scores[i].item()} for sample {i} ({len(bad)} non-finite in "
                f"total): {_sample_text(prompts[i], responses[i])}. Return finite numbers."
            )
        return scores

    def _locate_failure(self, prompts: list[str], responses: list[str], exc: Exception) -> RewardError:
        # Retry one sample at a time to name the one that breaks the function.
        for i, (prompt, response) in enumerate(zip(prompts, responses)):
            try:
                self.fn([prompt], [response])
            except Exception as single:
                return RewardError(
                    f"reward {self.name!r} raised {type(single).__name__}: {single} on sample {i}: "
                    f"{_sample_text(prompt, response)}"
                )
        return RewardError(
            f"reward {self.name!r} raised {type(exc).__name__}: {exc} on the batch of {len(prompts)} "
            "(no single sample fails on its own)."
        )

    def __call__(self, prompts: list[str], responses: list[str]) -> RewardOutput:
        return RewardOutput(self.scores(prompts, responses))


def objective_spec(spec: Any) -> tuple[Any, float]:
    """(reward, weight) of one objective of a dict of objectives: a reward, or a (reward, weight) tuple."""
    return spec if isinstance(spec, tuple) else (spec, 1.0)


def objective_parts(objectives: dict[str, Any]) -> dict[str, tuple[CallableReward, float]]:
    """Each named objective as (checked reward, weight): what WeightedReward and RoutedReward hold."""
    parts = {}
    for name, spec in objectives.items():
        fn, weight = objective_spec(spec)
        parts[name] = (CallableReward(fn, name=name), float(weight))
    return parts


class CombinedReward:
    """Named objectives (`parts`: name -> (checked reward, weight)), each scoring every sample and reported
    on its own, combined into one score per sample by `combine`. Subclass it for a rule of your own that
    reads the scores; the RL stage hands `combine` each reward model's scores already rescaled (mean 0,
    std 1 on the starting policy's samples). Llama 2's full rule, for instance, also gives the safety
    model any answer it scores low (Touvron et al. 2023, section 3.2.3):

        >>> class SafetyFirst(CombinedReward):
        ...     def __init__(self, helpful, safe, threshold=-1.0):
        ...         self.parts, self.threshold = objective_parts({"helpful": helpful, "safe": safe}), threshold
        ...     def combine(self, components, prompts):
        ...         safe = components["safe"]
        ...         return torch.where(safe < self.threshold, safe, components["helpful"])
    """

    parts: dict[str, tuple[CallableReward, float]]

    def combine(self, components: dict[str, torch.Tensor], prompts: Sequence[str]) -> torch.Tensor:
        """One score per sample from each objective's scores (the RL stage calls it again after rescaling
        the objectives that are reward models)."""
        raise NotImplementedError

    def __call__(self, prompts: list[str], responses: list[str]) -> RewardOutput:
        components = {name: fn.scores(prompts, responses) for name, (fn, _) in self.parts.items()}
        return RewardOutput(self.combine(components, prompts), components)


class WeightedReward(CombinedReward):
    """A weighted sum of named objectives; each one is also reported on its own.

    `objectives` maps a name to a reward or to (reward, weight); the weight defaults to 1.
    """

    def __init__(self, objectives: dict[str, Any]) -> None:
        if not objectives:
            raise ValueError("WeightedReward needs at least one objective.")
        self.parts = objective_parts(objectives)

    @property
    def weights(self) -> dict[str, float]:
        return {name: weight for name, (_, weight) in self.parts.items()}

    def combine(self, components: dict[str, torch.Tensor], prompts: Sequence[str]) -> torch.Tensor:
        """The weighted sum of the objectives' scores."""
        return sum(weight * components[name] for name, (_, weight) in self.parts.items())


class RoutedReward(CombinedReward):
    """Each prompt scored by one of several named objectives: the one `route(prompt)` names.

    A weighted sum asks every answer to please every objective at once, so where two of them pull
    opposite ways (answer vs refuse) the sum settles on one compromise for all prompts. A route scores
    each prompt by the objective that matters for it instead. Llama 2 combines its helpfulness and
    safety reward models much like this (Touvron et al. 2023, arXiv:2307.09288, section 3.2.3): the
    safety score on prompts tagged as safety-relevant or where that score is low, else the helpfulness
    one. A route here sees only the prompt; for a rule that also reads the scores, subclass
    `CombinedReward`.
    Every objective still scores every sample, so each is logged as `objective/scores/<name>`.
    An objective may be a reward or (reward, weight), as in `WeightedReward`.

        >>> from rlhf_lab.raters import harmful_categories
        >>> RoutedReward({"helpful": helpful_rm, "harmless": harmless_rm},
        ...              route=lambda prompt: "harmless" if harmful_categories(prompt) else "helpful")
    """

    def __init__(self, objectives: dict[str, Any], route: Callable[[str], str]) -> None:
        if not isinstance(objectives, dict) or not objectives:
            raise ValueError("RoutedReward needs a dict of at least one named objective.")
        if not callable(route):
            raise TypeError(
                f"route must be a function route(prompt) -> objective name, got {type(route).__name__}."
            )
        self.parts = objective_parts(objectives)
        self.route = route
        self._last: tuple[tuple[str, ...], list[str]] | None = None  # (prompts, routes) of the last batch

    def routes(self, prompts: Sequence[str]) -> list[str]:
        """The objective that scores each prompt; a clear RewardError for a failing or unknown route.

        The last batch's routes are kept: the RL stage combines a batch twice (the raw scores, then the
        rescaled ones), and a route may be a costly classifier, or a random one that must not change
        its mind between the two."""
        key = tuple(prompts)
        if self._last is not None and self._last[0] == key:
            return list(self._last[1])
        names = []
        for i, prompt in enumerate(prompts):
            try:
                name = self.route(prompt)
            except Exception as exc:
                raise RewardError(
                    f"route raised {type(exc).__name__}: {exc} on prompt {i}: {prompt[:300]!r}"
                ) from exc
            if name not in self.parts:
                raise RewardError(
                    f"route returned {name!r} for prompt {i} ({prompt[:300]!r}); "
                    f"it must return one of the objectives: {', '.join(map(repr, self.parts))}."
                )
            names.append(name)
        self._last = (key, names)
        return list(names)

    def combine(self, components: dict[str, torch.Tensor], prompts: Sequence[str]) -> torch.Tensor:
        """Each prompt's score from its route's objective (times that objective's weight)."""
        names = self.routes(prompts)
        return torch.stack([self.parts[name][1] * components[name][i] for i, name in enumerate(names)])


class ModelReward:
    """A Hugging Face sequence classifier (one output) scoring prompt + response as chat text."""

    def __init__(
        self, model: Any, tokenizer: Any, batch_size: int = 32, max_length: int | None = None
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_length = max_length
        self.name = "reward_model"

    @torch.no_grad()
    def scores(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        out = []
        try:
            for start in range(0, len(prompts), self.batch_size):
                texts = [
                    format_conversation(self.tokenizer, p, r)
                    for p, r in zip(
                        prompts[start : start + self.batch_size], responses[start : start + self.batch_size]
                    )
                ]
                enc = self.tokenizer(
                    texts,
                    return_tensors="pt",
                    padding=True,
                    # Right padding: GPT-2 style models shift positions under left padding, so a
                    # score would change with its batch-mates; pooling reads the last non-pad token.
                    padding_side="right",
                    truncation=self.max_length is not None,
                    max_length=self.max_length,
                    add_special_tokens=False,
                ).to(device)
                with autocast_for(device):
                    out.append(self.model(**enc).logits[:, 0].float())
        finally:
            self.model.train(was_training)
        return torch.cat(out).cpu()

    def __call__(self, prompts: list[str], responses: list[str]) -> RewardOutput:
        return RewardOutput(self.scores(prompts, responses))


Reward = CallableReward | CombinedReward | ModelReward


def as_reward(obj: Any) -> Reward:
    """Turn a reward-model stage, an ensemble, a plain function or a dict of objectives into a Reward."""
    if isinstance(obj, (CallableReward, CombinedReward, ModelReward)):
        return obj
    if isinstance(obj, dict):
        return WeightedReward(obj)
    if obj is None:
        raise TypeError(
            "reward is required: a reward model stage, a function f(prompts, responses), or a dict."
        )
    if is_judge(obj):
        # A gold judge (rlhf_lab.raters) is called as judge(prompt, a, b) for pairs; as a reward
        # it scores one response at a time.
        judge = obj
        return CallableReward(
            lambda prompts, responses: [judge.score(p, r) for p, r in zip(prompts, responses)],
            name=getattr(judge, "name", type(judge).__name__),
        )
    if isinstance(obj, torch.nn.Module) and not hasattr(obj, "score_texts") and hasattr(obj, "config"):
        raise TypeError(
            "Got a bare model as reward; wrap it: ModelReward(model, tokenizer) "
            "(or pass the reward-model stage itself)."
        )
    return CallableReward(obj)


def untrained_reward_models(obj: Any) -> list[Any]:
    """The reward-model stages in `obj` (a stage, an ensemble's members, a dict of objectives) whose scores
    still come from a random head (`RewardModelStage.trained` is False)."""
    if isinstance(obj, dict):
        parts = [objective_spec(spec)[0] for spec in obj.values()]
        return [stage for part in parts for stage in untrained_reward_models(part)]
    if isinstance(obj, CombinedReward):
        return [stage for fn, _ in obj.parts.values() for stage in untrained_reward_models(fn)]
    if hasattr(obj, "members"):
        return [stage for member in obj.members for stage in untrained_reward_models(member)]
    if isinstance(obj, CallableReward):
        return untrained_reward_models(obj.fn)
    from rlhf_lab.rl.normalization import OnOneScale

    if isinstance(obj, OnOneScale):
        return untrained_reward_models(obj.reward)
    return [obj] if getattr(obj, "trained", True) is False else []


def warn_if_untrained(obj: Any) -> None:
    """A LabNotice when RL is about to optimise a reward model that was never trained (a forgotten fit())."""
    if untrained_reward_models(obj):
        warnings.warn(
            "The reward model has not been trained yet (no fit(), no pre-trained weights): its scores are "
            "random, so RL would chase noise. Call rm.fit() first, or "
            "lab.reward_model(pretrained=<task>) to start from the bundled pairs.",
            LabNotice,
            stacklevel=3,
        )


def is_judge(obj: Any) -> bool:
    """A rater/judge with a per-response `score(prompt, response)` (not a reward-model stage)."""
    from rlhf_lab.raters.gold import ScoringRater

    return isinstance(obj, ScoringRater)


def check_finite_scores(scores: torch.Tensor, prompts: Sequence[str], responses: Sequence[str]) -> None:
    """Final guard on the combined scores (e.g. inf * 0 in a weighted sum)."""
    for i, value in enumerate(scores.tolist()):
        if not math.isfinite(value):
            raise RewardError(f"reward is {value} for sample {i}: {_sample_text(prompts[i], responses[i])}")
