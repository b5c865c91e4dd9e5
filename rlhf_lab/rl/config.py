"""`RLConfig`: every hyper-parameter of the RL engine, one docstring per field.

    >>> from rlhf_lab.rl import RLConfig
    >>> RLConfig(estimator="grpo", samples_per_prompt=4, beta=0.04).validate()

Defaults follow the PPO-for-language-models recipe (Ziegler et al. 2019, arXiv:1909.08593; Huang
et al. 2024, "The N+ Implementation Details of RLHF with PPO", arXiv:2403.17031; TRL's PPOConfig):
gamma 1, GAE lambda 0.95, clip 0.2, value clip 0.2, value coefficient 0.1, 4 epochs over 4
minibatches, whitened advantages.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from rlhf_lab.generation import MAX_NEW_TOKENS_LIMIT
from rlhf_lab.hparams import above, at_least, between, check_fields
from rlhf_lab.lora import LORA_ALPHA, LORA_R, LORA_TARGET_MODULES

ESTIMATORS = ("ppo", "rloo", "grpo", "reinforce")
GROUP_ESTIMATORS = ("rloo", "grpo")


def samples_per_prompt(estimator: str, given: int | None = None) -> int:
    """Answers drawn per prompt: `given`, else 4 for the group estimators (they compare answers to one
    prompt) and 1 for the others."""
    if given is not None:
        return given
    return 4 if estimator in GROUP_ESTIMATORS else 1


COMPILE_UPDATE_MODES = (False, True, "default", "reduce-overhead")
"""What RLConfig.compile_update takes: off, on (inductor's default mode), or a torch.compile mode."""

RL_RANGES = {
    "samples_per_prompt": at_least(1),
    "batch_size": at_least(1),
    "max_new_tokens": between(1, MAX_NEW_TOKENS_LIMIT),
    "temperature": above(0),
    "top_k": at_least(0),
    "top_p": between(0, 1, low_open=True),
    "beta": at_least(0),
    "target_kl": above(0),
    "kl_horizon": at_least(1),
    "kl_limit": at_least(0),
    "reward_clip": above(0),
    "learning_rate": at_least(0),
    "value_learning_rate": at_least(0),
    "num_epochs": at_least(1),
    "num_minibatches": at_least(1),
    "gradient_accumulation_steps": at_least(1),
    "clip_range": above(0),
    "value_clip_range": above(0),
    "vf_coef": at_least(0),
    "max_grad_norm": at_least(0),
    "gamma": between(0, 1),
    "lam": between(0, 1),
    "group_std_eps": above(0),
    "lora_r": at_least(1),
    "lora_alpha": above(0),
    "eval_batch_size": at_least(1),
    "logprob_chunk_rows": at_least(1),
    "keep_sample_steps": at_least(1),
    "reward_norm_samples": at_least(2),
}
"""Allowed values of RLConfig's numeric fields (checked by `validate()` through rlhf_lab.hparams)."""


@dataclass
class RLConfig:
    # --- which algorithm -------------------------------------------------------------
    estimator: str = "ppo"
    """Advantage estimator: "ppo" (GAE with a value function), "rloo" (leave-one-out baseline,
    KL folded into the reward), "grpo" (group-normalised scores, k3 KL in the loss) or
    "reinforce" (batch-mean baseline, no clipping)."""
    samples_per_prompt: int | None = None
    """k responses sampled per prompt. None means 4 for rloo/grpo and 1 for ppo/reinforce."""

    # --- rollout ---------------------------------------------------------------------
    batch_size: int = 16
    """Prompts per step (the step's rollouts are batch_size * samples_per_prompt)."""
    max_new_tokens: int = 24
    """Longest response, in tokens."""
    temperature: float = 1.0
    """Sampling temperature; log-probs are computed at the same temperature."""
    top_k: int = 0
    """Sample from the k most likely tokens only (0 = off). Log-probs are scored under the full, untruncated
    distribution (as TRL's trainers do), so with top_k/top_p the sampler and the scored "old" policy differ
    (up to 3.6 nats on a token at top_k=20): the importance ratios are then biased. Leave both off for RL."""
    top_p: float = 1.0
    """Nucleus sampling threshold (1.0 = off); see top_k for what truncation does to the ratios."""
    stop_on_eos: bool = True
    """End a response at EOS. False samples exactly max_new_tokens (benchmarks)."""

    # --- reward shaping --------------------------------------------------------------
    beta: float = 0.05
    """KL coefficient (initial value when target_kl is set)."""
    target_kl: float | None = None
    """Adaptive KL control: move beta so the per-sequence KL approaches this (nats). None = fixed beta."""
    kl_horizon: int | None = None
    """Adaptive controller horizon in rollouts (Ziegler et al. 2019): larger = slower beta changes.
    None = ten steps' worth of rollouts (10 * batch_size * samples_per_prompt), so beta can respond
    within a lab run of tens of steps. (lm-human-preferences used 10,000 rollouts: at 16 rollouts a step
    that would move beta by 0.4% in 20 steps, i.e. not at all.)"""
    kl_estimator: str = "k1"
    """Per-token KL used in the reward penalty: "k1" (log-ratio) or "k3" (always >= 0). GRPO uses k3 in its loss."""
    kl_warning: float = 8.0
    """Per-sequence KL (nats) above which a step is flagged (objective/kl_warning) and a warning is issued once."""
    kl_limit: float | None = None
    """Pause with a StageError, before updating, when the rollout KL exceeds this (nats). None = no limit."""
    missing_eos_penalty: float | None = None
    """Subtracted from the score of responses that never emit EOS (discourages rambling)."""
    reward_clip: float | None = None
    """Clip scores to [-reward_clip, reward_clip] before shaping."""
    whiten_rewards: bool = False
    """Scale the per-token rewards to unit variance (mean kept) before GAE (PPO only)."""
    whiten_advantages: bool = True
    """Normalise advantages to zero mean, unit variance over the batch (all estimators)."""
    normalize_reward: bool | None = None
    """Fit a gain and bias on the first step's scores (samples of the starting policy) so they have mean 0
    and std 1, as lm-human-preferences does, so beta means the same for every reward model (see
    rlhf_lab.rl.normalization). None = on for learned reward models, off for reward functions and gold
    judges, whose scale means something."""
    reward_norm_samples: int | None = None
    """How many answers of the starting policy that gain and bias are fitted on. None = the first step's
    samples (batch_size * samples_per_prompt per rank). A number N: before the first step the policy
    answers N prompts (in the prompts' order, one answer each, N / ranks per rank) for the fit alone, as
    lm-human-preference-details fits on 256 samples; a larger N gives a steadier scale for a few seconds
    of sampling. With several ranks the fit uses every rank's samples, so all ranks share one scale."""
    reward_scale: dict | None = None
    """A scale pinned instead of fitted: {"bias": b, "std": s} for one reward model (or the total, with
    normalize_reward=True), or per objective {"helpful": {"bias": b, "std": s}, ...} for reward models
    among several objectives (those not named are fitted as usual). Scores become (score - bias) / std.
    For runs that must share one scale, as `OnOneScale` does in a notebook (a saved recipe writes its fits
    here). `set_reward()` fits anew."""

    # --- PPO update ------------------------------------------------------------------
    learning_rate: float = 1e-5
    """AdamW learning rate of the policy (and of a separate value model's backbone)."""
    value_learning_rate: float | None = 1e-3
    """AdamW learning rate of the value head (PPO); None = learning_rate. The head is a fresh linear layer
    that has to catch up with the returns within a few steps, so like a classifier head in fine-tuning it
    learns far faster than the backbone: at the policy's own rate (1e-6..1e-5 for a real model) it stays
    near zero, explained variance stays 0 and GAE gives the early tokens almost no credit."""
    num_epochs: int = 4
    """Passes (K) over the rollouts per step."""
    num_minibatches: int = 4
    """Minibatches per epoch; batch_size * samples_per_prompt must divide evenly."""
    gradient_accumulation_steps: int = 1
    """Forward/backward passes per minibatch, each over a slice of its rows, before its one optimizer
    step: the activations held at once shrink by this factor and the gradient stays the same (every loss
    is a masked mean over the minibatch's tokens; rlhf_lab.rl.update). More passes are slower."""
    clip_range: float = 0.2
    """Clip of the probability ratio in the surrogate objective (not used by reinforce)."""
    value_clip_range: float = 0.2
    """Clip of the value update around the rollout's value prediction."""
    vf_coef: float = 0.1
    """Weight of the value loss in the total loss."""
    ent_coef: float = 0.0
    """Weight of an entropy bonus (0 = entropy reported, not optimised)."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this value (0 disables clipping, as in every stage)."""
    gamma: float = 1.0
    """Discount factor over response tokens."""
    lam: float = 0.95
    """GAE lambda."""
    group_std_eps: float = 1e-4
    """Added to the group standard deviation in GRPO's normalisation."""

    # --- models ----------------------------------------------------------------------
    value: str = "head"
    """PPO value function: "head" (a linear head on the policy's last hidden state, one backward)
    or "separate" (a copy of the policy backbone with its own head)."""
    lora: bool = False
    """Train LoRA adapters (peft) instead of all weights; the reference is then the adapter switched off."""
    lora_r: int = LORA_R
    """LoRA rank (rlhf_lab.lora's default, shared by every stage)."""
    lora_alpha: int = LORA_ALPHA
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    lora_target_modules: str | list[str] = LORA_TARGET_MODULES
    """Modules that get adapters (peft's target_modules)."""

    # --- engine ----------------------------------------------------------------------
    seed: int | None = 0
    """Seeds torch at construction and fixes the prompt order. None = leave the RNG alone."""
    mixed_precision: str = "auto"
    """"auto" = bf16 autocast on CUDA when supported, fp32 on CPU; "bf16" or "no" to force."""
    compile_generation: bool = False
    """Static KV cache in `generate`; on CUDA transformers then torch.compiles the decoding step (CUDA graphs).
    On the CPU the cache is static but nothing is compiled (no gain there; the tests use it to check the fast path)."""
    compile_update: bool | str = False
    """torch.compile the policy in the update (its minibatches' forward and backward). On a GPU a small
    model's update is launch-bound (bench/README.md, "GPU"): fused kernels mean fewer launches. No effect
    on sampling or on the no-grad forwards; shapes are marked dynamic, so new lengths do not recompile.
    True (= "default"): each transformer block is compiled on its own and all blocks share the result
    (regional compilation, rlhf_lab.rl.compiled): the first update pays seconds of compiling (17 s for the
    SmolLM2-135M shape on a 2-core CPU, against 131 s for the whole model). "reduce-overhead": the whole
    model, compiled and replayed as CUDA graphs (one launch instead of thousands); its first update pays
    the whole model's compile, so it suits long runs. It needs gradient_accumulation_steps = 1: CUDA graph
    trees overwrite a gradient accumulated across slices (pytorch/pytorch#169545)."""
    eval_batch_size: int | None = None
    """Rows per no-grad forward (old/ref log-probs, values). None = the whole rollout batch in one pass."""
    logprob_chunk_rows: int = 8
    """Rows per chunk when turning logits into log-probs without grad (bounds float32 copies of the vocab)."""
    keep_sample_steps: int = 50
    """How many recent steps' samples `samples()` keeps (bounded memory)."""

    # --------------------------------------------------------------------------------
    @property
    def k(self) -> int:
        """Samples per prompt, with the estimator's default filled in."""
        return samples_per_prompt(self.estimator, self.samples_per_prompt)

    @property
    def rollouts_per_step(self) -> int:
        return self.batch_size * self.k

    @property
    def value_lr(self) -> float:
        """The value head's learning rate with its default filled in."""
        return self.value_learning_rate if self.value_learning_rate is not None else self.learning_rate

    @property
    def kl_horizon_rollouts(self) -> int:
        """The adaptive KL controller's horizon with its default filled in."""
        return self.kl_horizon if self.kl_horizon is not None else 10 * self.rollouts_per_step

    def validate(self) -> RLConfig:
        """Raise ValueError with a plain explanation for any setting that cannot work."""
        self.check_settings()
        if self.estimator in GROUP_ESTIMATORS and self.k < 2:
            raise ValueError(
                f"{self.estimator} compares samples of the same prompt, so samples_per_prompt must be >= 2 "
                f"(got {self.k})."
            )
        if self.rollouts_per_step % self.num_minibatches:
            raise ValueError(
                f"batch_size * samples_per_prompt = {self.batch_size} * {self.k} = {self.rollouts_per_step} "
                f"rollouts cannot be split into {self.num_minibatches} equal minibatches; pick a batch_size "
                f"that {self.num_minibatches} divides (or change num_minibatches)."
            )
        return self

    def check_settings(self) -> RLConfig:
        """The checks of `validate()` that look at one setting at a time, not at how the batch is shaped.

        A caller that fills in the batch later (the Lab sizes it from its preset) can check a user's
        settings this early: `rlhf-lab train` does, before any model loads.
        """
        # Types, finiteness (NaN slips through every `<`/`>` comparison) and ranges first.
        check_fields(self, RL_RANGES)
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}.")
        if not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
            raise ValueError(
                f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS_LIMIT}, got {self.max_new_tokens}."
            )
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 (sampling), got {self.temperature}.")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}.")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}.")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}.")
        if self.target_kl is not None and self.target_kl <= 0:
            raise ValueError(f"target_kl must be > 0 or None, got {self.target_kl}.")
        if self.kl_estimator not in ("k1", "k3"):
            raise ValueError(f"kl_estimator must be 'k1' or 'k3', got {self.kl_estimator!r}.")
        if self.value not in ("head", "separate"):
            raise ValueError(f"value must be 'head' or 'separate', got {self.value!r}.")
        if self.compile_update not in COMPILE_UPDATE_MODES:
            raise ValueError(
                f"compile_update must be one of {COMPILE_UPDATE_MODES}, got {self.compile_update!r}."
            )
        if self.compile_update == "reduce-overhead" and self.gradient_accumulation_steps > 1:
            raise ValueError(
                "compile_update='reduce-overhead' (CUDA graphs) needs gradient_accumulation_steps=1: CUDA "
                "graph trees overwrite gradients accumulated across slices (pytorch/pytorch#169545). Use "
                "compile_update=True, or one slice per minibatch."
            )
        if self.mixed_precision not in ("auto", "bf16", "no"):
            raise ValueError(f"mixed_precision must be 'auto', 'bf16' or 'no', got {self.mixed_precision!r}.")
        if self.num_epochs < 1 or self.learning_rate < 0:
            raise ValueError("num_epochs must be >= 1 and learning_rate >= 0.")
        check_reward_scale(self.reward_scale)
        if self.keep_sample_steps < 1:
            raise ValueError(f"keep_sample_steps must be >= 1, got {self.keep_sample_steps}.")
        return self


def check_reward_scale(scale: Any) -> None:
    """ValueError unless `scale` is None, {"bias": b, "std": s}, or a mapping of names to such pairs
    (b finite, s finite and > 0)."""
    if scale is None:
        return
    lone = isinstance(scale, dict) and set(scale) == {"bias", "std"}
    pairs = {"": scale} if lone else scale if isinstance(scale, dict) and scale else None
    for name, pair in (pairs or {None: None}).items():
        where = "reward_scale" + (f"[{name!r}]" if name else "")
        values = list(pair.values()) if isinstance(pair, dict) and set(pair) == {"bias", "std"} else []
        if not values or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
            raise ValueError(
                f'{where} must be {{"bias": number, "std": number}} (one reward model) or a mapping of '
                f"objective names to such pairs, got {pair!r}."
            )
        if not all(math.isfinite(float(v)) for v in values) or float(pair["std"]) <= 0:
            raise ValueError(f"{where}: bias must be finite and std finite and > 0, got {pair!r}.")
