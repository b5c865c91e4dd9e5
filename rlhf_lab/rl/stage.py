"""`RLStage`: PPO (and RLOO, GRPO, REINFORCE) for language models, one explicit `step()` at a time.

    >>> from rlhf_lab.rl import RLStage
    >>> ppo = RLStage(policy, tok, prompts, reward=rm, beta=0.1)            # estimator="ppo"
    >>> ppo.step()                     # rollout -> score -> KL-shaped rewards -> advantages -> K epochs
    >>> ppo.pause(); ppo.set(beta=0.2, temperature=0.7); ppo.resume()
    >>> ppo.samples(8)                 # the latest prompts/responses/rewards, for the labeller
    >>> ppo.set_reward(retrained_rm)   # the flywheel: swap the reward, keep the policy and optimizer

One step (`_train_step` reads top to bottom like the algorithm):
1. rollout: `batch_size` prompts (seeded, resumable order), `samples_per_prompt` responses each;
2. score: the reward sees prompt and response text; a missing-EOS penalty and clipping apply;
3. one no-grad pass each for the old log-probs (+ values) and the frozen reference's log-probs;
   KL per token by k1 and k3; PPO adds -beta * KL to every token and the score on the last one;
4. advantages: GAE (ppo), leave-one-out (rloo), group-normalised (grpo) or mean baseline (reinforce);
5. `num_epochs` passes over `num_minibatches` minibatches of the clipped surrogate (+ clipped value
   loss for PPO, + beta * k3 KL in the loss for GRPO), gradient clipping, AdamW.

Mutable while paused (`stage.set(...)`, applied from the next step): beta, target_kl (None switches
to a fixed beta), learning_rate, temperature, top_k, top_p, batch_size, max_new_tokens, kl_limit.

Metrics (names and meanings in rlhf_lab.metrics): objective/{kl, kl_k3, scores, rlhf_reward,
non_score_reward, entropy, beta, kl_warning}, policy/{entropy, approxkl, clipfrac, ratio},
loss/{policy, total}, train/{learning_rate, grad_norm}, response/{length, eos_rate}; PPO adds
loss/value and val/{clipfrac, mean, explained_variance}; objective/scores/<name> per weighted
objective; objective/gold_scores with `gold=`. Update metrics are means over all minibatches;
`last_minibatch_stats` keeps each minibatch's, `last_timings` the seconds per phase.

Device-agnostic: the models' device decides; on CUDA forwards run under bf16 autocast (fp32 master
weights); AdamW is fused on CUDA and CPU (rlhf_lab.optim); `compile_generation` gives a static KV
cache (and compiled decoding on CUDA). Metric values stay on the device through the update loop
and come to the host once per step; the one deliberate sync inside the loop is `check_finite(loss)`
before each backward, which the stage contract requires so a NaN never reaches the weights.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import json
import threading
import time
import traceback
import warnings
from collections import deque
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from rlhf_lab.chat import format_prompt
from rlhf_lab.device import autocast_for
from rlhf_lab.errors import StageError
from rlhf_lab.lora import is_peft_model, load_lora, save_base, wrap_lora
from rlhf_lab.models.helpers import freeze
from rlhf_lab.optim import adamw
from rlhf_lab.rl.advantages import (
    explained_variance,
    gae,
    grpo_advantages,
    kl_shaped_rewards,
    masked_mean,
    reinforce_advantages,
    rloo_advantages,
    whiten,
)
from rlhf_lab.rl.config import RLConfig
from rlhf_lab.rl.distributed import average_gradients, world_size
from rlhf_lab.rl.kl import kl_controller_from_state, kl_estimate, kl_k1, kl_k3, make_kl_controller
from rlhf_lab.rl.logprobs import token_logprobs
from rlhf_lab.rl.rewards import as_reward, check_finite_scores
from rlhf_lab.rl.rollout import (
    PromptOrder,
    Rollout,
    decode_responses,
    left_pad,
    position_ids_from_mask,
    response_forward,
    sample_responses,
)
from rlhf_lab.rl.value import SeparateValueModel, ValueHead, hidden_size
from rlhf_lab.stages.base import (
    Stage,
    StepClock,
    config_from_dict,
    load_training_state,
    make_config,
    model_path,
    save_model,
    save_training_state,
)

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


class RLStage(Stage):
    """RL against a reward with a KL penalty to a frozen reference. See the module docstring."""

    name = "ppo"  # replaced per instance by the estimator's name
    mutable_hparams = (
        "beta",
        "target_kl",
        "learning_rate",
        "temperature",
        "top_k",
        "top_p",
        "batch_size",
        "max_new_tokens",
        "kl_limit",
    )

    def __init__(
        self,
        policy: torch.nn.Module,
        tokenizer: Any,
        prompts: list[str],
        reward: Any,
        *,
        estimator: str | None = None,
        config: RLConfig | None = None,
        ref_policy: torch.nn.Module | None = None,
        value_model: torch.nn.Module | None = None,
        gold: Any = None,
        clock: StepClock | None = None,
        checkpoint_every: int | None = None,
        checkpoint_dir: str | None = None,
        **overrides: Any,
    ) -> None:
        if estimator is not None:
            overrides = {"estimator": estimator, **overrides}
        config = make_config(config, RLConfig, overrides)
        super().__init__(
            config, clock=clock, checkpoint_every=checkpoint_every, checkpoint_dir=checkpoint_dir
        )
        self.name = config.estimator
        if config.seed is not None:
            torch.manual_seed(config.seed)
        self.device = next(policy.parameters()).device
        self.tokenizer = tokenizer
        self.prompts = _check_prompts(prompts)
        self._prompt_tokens = [
            tokenizer(format_prompt(tokenizer, p), add_special_tokens=False)["input_ids"]
            for p in self.prompts
        ]
        self.reward = as_reward(reward)
        self.gold = gold

        # Models. The reference is a frozen deep copy unless given, or the adapter-off policy with LoRA.
        wants_value_model = config.estimator == "ppo" and (
            config.value == "separate" or value_model is not None
        )
        if wants_value_model and value_model is None:
            value_model = copy.deepcopy(policy)
        self.policy = (
            wrap_lora(
                policy, r=config.lora_r, alpha=config.lora_alpha, target_modules=config.lora_target_modules
            )
            if config.lora
            else policy
        )
        self.uses_lora = is_peft_model(self.policy)
        if self.uses_lora:
            self.ref_policy = None
        else:
            self.ref_policy = freeze(ref_policy if ref_policy is not None else copy.deepcopy(policy))
        self.value_head = None
        self.value_model = None
        if wants_value_model:
            config.value = "separate"
            self.value_model = SeparateValueModel(value_model).to(self.device)
        elif config.estimator == "ppo":
            self.value_head = ValueHead(hidden_size(self.policy)).to(self.device)
        self._check_lengths(config)

        self.params = [p for p in self.policy.parameters() if p.requires_grad]
        for extra in (self.value_head, self.value_model):
            if extra is not None:
                self.params += list(extra.parameters())
        self.optimizer = adamw(self.params, lr=config.learning_rate, eps=1e-5, weight_decay=0.0)
        self.kl_ctl = make_kl_controller(config.beta, config.target_kl, config.kl_horizon)
        self._world_size = world_size()
        self.order = PromptOrder(len(self.prompts), seed=config.seed or 0)
        self._samples: deque[tuple[int, list[dict[str, Any]]]] = deque(maxlen=config.keep_sample_steps)
        self._kl_warned = False
        self.last_timings: dict[str, float] = {}
        self.last_minibatch_stats: list[dict[str, float]] = []

    # ------------------------------------------------------------------ one step
    def _train_step(self) -> dict[str, Any]:
        phase = ["start"]
        try:
            with self._dropout_off():
                return self._rl_step(phase)
        except torch.OutOfMemoryError as exc:
            raise self._out_of_memory(exc, phase[0]) from exc

    def _rl_step(self, phase: list[str]) -> dict[str, Any]:
        cfg, timer = self.config, _PhaseTimer(self.last_timings, phase)

        # 1. Rollout: batch_size prompts, k samples each (a prompt's k samples are adjacent rows).
        timer.start("generation")
        rows = [i for i in self.order.take(cfg.batch_size) for _ in range(cfg.k)]
        prompts = [self.prompts[i] for i in rows]
        batch = self._sample([self._prompt_tokens[i] for i in rows])
        responses = decode_responses(self.tokenizer, batch)
        mask = batch.response_mask

        # 2. Score the text; the score arrives at the last response token.
        timer.start("scoring")
        reward = self.reward(prompts, responses)
        check_finite_scores(reward.scores, prompts, responses)
        scores = self._adjust_scores(reward.scores.to(self.device), batch)
        gold = [float(self.gold.score(p, r)) for p, r in zip(prompts, responses)] if self.gold else None

        # 3. Old log-probs (+ values) and reference log-probs: one no-grad pass each.
        timer.start("forwards")
        with torch.no_grad():
            old_logprobs, old_entropy, old_values = self._policy_pass(batch)
            ref_logprobs = self._reference_pass(batch)
        kl = kl_k1(old_logprobs, ref_logprobs) * mask
        kl3 = kl_k3(old_logprobs, ref_logprobs) * mask
        penalty = (
            kl3
            if cfg.estimator == "grpo"
            else kl_estimate(cfg.kl_estimator, old_logprobs, ref_logprobs) * mask
        )
        beta = self.kl_ctl.value
        per_sample = torch.stack(
            [
                scores,
                kl.sum(1),
                kl3.sum(1),
                scores - beta * penalty.sum(1),
                mask.sum(1),
                batch.ended_with_eos.float(),
            ]
        ).cpu()  # one host transfer, before the update loop
        self._keep_samples(prompts, responses, per_sample, reward.components, gold)
        mean_kl = float(per_sample[1].mean())
        self._check_kl(mean_kl)

        # 4. Advantages.
        advantages, returns = self._advantages(scores, penalty, old_values, mask, beta)

        # 5. K epochs of minibatch updates.
        timer.start("update")
        stats = self._update(batch, old_logprobs, ref_logprobs, advantages, returns, old_values, beta)
        timer.stop()

        # 6. KL control and metrics.
        self.kl_ctl.update(mean_kl, len(rows))
        return self._metrics(per_sample, old_entropy, mask, old_values, returns, stats, reward, gold, beta)

    # ------------------------------------------------------------------ the pieces of a step
    def _sample(self, prompt_tokens: list[list[int]]) -> Rollout:
        cfg = self.config
        ids, attention = left_pad(prompt_tokens, self.tokenizer.pad_token_id, self.device)
        with autocast_for(self.device, cfg.mixed_precision):
            return sample_responses(
                self.policy,
                ids,
                attention,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
                max_new_tokens=cfg.max_new_tokens,
                temperature=cfg.temperature,
                top_k=cfg.top_k,
                top_p=cfg.top_p,
                stop_on_eos=cfg.stop_on_eos,
                static_cache=cfg.compile_generation,
            )

    def _adjust_scores(self, scores: torch.Tensor, batch: Rollout) -> torch.Tensor:
        cfg = self.config
        if cfg.missing_eos_penalty is not None and cfg.stop_on_eos:
            scores = scores - cfg.missing_eos_penalty * (~batch.ended_with_eos).float()
        if cfg.reward_clip is not None:
            scores = scores.clamp(-cfg.reward_clip, cfg.reward_clip)
        return scores

    def _policy_pass(self, batch: Rollout) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Log-probs and entropy of the sampled tokens under the sampling policy, and its values."""

        def run(part: Rollout):
            with autocast_for(self.device, self.config.mixed_precision):
                logits, hidden = response_forward(self.policy, part, with_hidden=self.value_head is not None)
                values = self._values(part, hidden)
            logp, entropy = self._logprobs(logits, part, with_entropy=True)
            return logp, entropy, values

        return _in_chunks(batch, self.config.eval_batch_size, run)

    def _reference_pass(self, batch: Rollout) -> torch.Tensor:
        def run(part: Rollout):
            with autocast_for(self.device, self.config.mixed_precision):
                if self.ref_policy is None:  # LoRA: the reference is the base model, adapter off
                    with self.policy.disable_adapter():
                        logits, _ = response_forward(self.policy, part)
                else:
                    logits, _ = response_forward(self.ref_policy, part)
            return (self._logprobs(logits, part)[0],)

        return _in_chunks(batch, self.config.eval_batch_size, run)[0]

    def _logprobs(self, logits: torch.Tensor, batch: Rollout, with_entropy: bool = False):
        return token_logprobs(
            logits,
            batch.response_ids,
            self.config.temperature,
            with_entropy=with_entropy,
            entropy_grad=self.config.ent_coef > 0,
            chunk_rows=self.config.logprob_chunk_rows,
        )

    def _values(self, batch: Rollout, hidden: torch.Tensor | None) -> torch.Tensor | None:
        if self.value_head is not None:
            return self.value_head(hidden)
        if self.value_model is not None:
            attention = batch.attention_mask
            return self.value_model(
                batch.input_ids, attention, position_ids_from_mask(attention), batch.response_length
            ).float()
        return None

    def _advantages(
        self,
        scores: torch.Tensor,
        penalty: torch.Tensor,
        values: torch.Tensor | None,
        mask: torch.Tensor,
        beta: float,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        cfg = self.config
        returns = None
        if cfg.estimator == "ppo":
            rewards = kl_shaped_rewards(scores, penalty, mask, beta)
            if cfg.whiten_rewards:
                rewards = whiten(rewards, mask, shift_mean=False)
            advantages, returns = gae(rewards, values, mask, cfg.gamma, cfg.lam)
        else:
            if cfg.estimator == "grpo":  # KL is in the loss, not the reward
                per_sequence = grpo_advantages(scores, cfg.k, cfg.group_std_eps)
            else:
                shaped = scores - beta * penalty.sum(1)
                per_sequence = (
                    rloo_advantages(shaped, cfg.k)
                    if cfg.estimator == "rloo"
                    else reinforce_advantages(shaped)
                )
            advantages = per_sequence[:, None] * mask
        if cfg.whiten_advantages:
            advantages = whiten(advantages, mask)
        return advantages, returns

    def _update(
        self,
        batch: Rollout,
        old_logprobs: torch.Tensor,
        ref_logprobs: torch.Tensor,
        advantages: torch.Tensor,
        returns: torch.Tensor | None,
        old_values: torch.Tensor | None,
        beta: float,
    ) -> torch.Tensor:
        cfg = self.config
        n = batch.response_ids.shape[0]
        size = n // cfg.num_minibatches
        # All shuffles drawn up front: no host-to-device copies inside the loop.
        order = torch.stack([torch.randperm(n) for _ in range(cfg.num_epochs)]).to(self.device)
        stats = torch.zeros(cfg.num_epochs, cfg.num_minibatches, len(UPDATE_STATS), device=self.device)
        zero = torch.zeros((), device=self.device)
        for epoch in range(cfg.num_epochs):
            for i in range(cfg.num_minibatches):
                idx = order[epoch, i * size : (i + 1) * size]
                mb = batch.rows(idx)
                mask = mb.response_mask
                with autocast_for(self.device, cfg.mixed_precision):
                    logits, hidden = response_forward(
                        self.policy, mb, with_hidden=self.value_head is not None
                    )
                    values = self._values(mb, hidden)
                logprobs, entropy = self._logprobs(logits, mb, with_entropy=True)

                # Clipped surrogate (REINFORCE: the plain importance-weighted gradient).
                logratio = (logprobs - old_logprobs[idx]) * mask
                ratio = torch.exp(logratio)
                adv = advantages[idx]
                if cfg.estimator == "reinforce":
                    pg_losses = -adv * ratio
                else:
                    pg_losses = torch.max(
                        -adv * ratio, -adv * ratio.clamp(1 - cfg.clip_range, 1 + cfg.clip_range)
                    )
                pg_loss = masked_mean(pg_losses, mask)
                loss = pg_loss

                # Clipped value loss (PPO).
                v_loss, v_clipfrac = zero, zero
                if values is not None:
                    v_old, ret = old_values[idx], returns[idx]
                    v_clipped = v_old + (values - v_old).clamp(-cfg.value_clip_range, cfg.value_clip_range)
                    unclipped, clipped = (values - ret) ** 2, (v_clipped - ret) ** 2
                    v_loss = 0.5 * masked_mean(torch.max(unclipped, clipped), mask)
                    v_clipfrac = masked_mean((clipped > unclipped).float(), mask)
                    loss = loss + cfg.vf_coef * v_loss

                # GRPO keeps the KL out of the reward and penalises it here, per token (k3).
                if cfg.estimator == "grpo" and beta > 0:
                    loss = loss + beta * masked_mean(kl_k3(logprobs, ref_logprobs[idx]), mask)
                if cfg.ent_coef > 0:
                    loss = loss - cfg.ent_coef * masked_mean(entropy, mask)

                self.check_finite(loss)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self._world_size > 1:  # data parallel (rlhf_lab.headless under accelerate launch)
                    average_gradients(self.params)
                grad_norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
                self.optimizer.step()

                with torch.no_grad():
                    clipfrac = masked_mean(((ratio - 1).abs() > cfg.clip_range).float(), mask)
                    stats[epoch, i] = torch.stack(
                        [
                            pg_loss,
                            v_loss,
                            loss,
                            masked_mean(entropy, mask),
                            masked_mean(0.5 * logratio**2, mask),
                            clipfrac,
                            masked_mean(ratio, mask),
                            v_clipfrac,
                            grad_norm.float(),
                        ]
                    ).detach()
        self.optimizer.zero_grad(set_to_none=True)
        return stats.cpu()

    def _metrics(self, per_sample, old_entropy, mask, old_values, returns, stats, reward, gold, beta) -> dict:
        scores, kl, kl3, rlhf_reward, lengths, eos = per_sample
        mean_kl = float(kl.mean())
        self.last_minibatch_stats = [dict(zip(UPDATE_STATS, row.tolist())) for row in stats.flatten(0, 1)]
        update = dict(zip(UPDATE_STATS, stats.mean((0, 1)).tolist()))
        metrics: dict[str, Any] = {
            "objective/kl": mean_kl,
            "objective/kl_k3": float(kl3.mean()),
            "objective/scores": float(scores.mean()),
            "objective/rlhf_reward": float(rlhf_reward.mean()),
            "objective/non_score_reward": float((rlhf_reward - scores).mean()),
            "objective/entropy": float((old_entropy * mask).sum(1).mean()),
            "objective/beta": beta,
            "objective/kl_warning": float(mean_kl > self.config.kl_warning),
            "response/length": float(lengths.mean()),
            "response/eos_rate": float(eos.mean()),
            "train/learning_rate": self.optimizer.param_groups[0]["lr"],
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
        for name, values in reward.components.items():
            metrics[f"objective/scores/{name}"] = float(values.mean())
        if gold is not None:
            metrics["objective/gold_scores"] = sum(gold) / len(gold)
        return metrics

    def _check_kl(self, mean_kl: float) -> None:
        cfg = self.config
        if (
            mean_kl > cfg.kl_warning
            and not self._kl_warned
            and threading.current_thread() is threading.main_thread()
        ):
            self._kl_warned = True  # the background thread only flags rows (objective/kl_warning)
            warnings.warn(
                f"KL to the reference is {mean_kl:.1f} nats per sequence (above {cfg.kl_warning}): watch for "
                "reward hacking (compare objective/gold_scores, read stage.samples()).",
                RuntimeWarning,
                stacklevel=2,
            )
        if cfg.kl_limit is not None and mean_kl > cfg.kl_limit:
            raise StageError(
                f"{self.name}: KL to the reference is {mean_kl:.2f} nats per sequence, above kl_limit="
                f"{cfg.kl_limit}. Stopped before updating (the policy is unchanged); the samples are in "
                "stage.samples(). To go on: raise beta (set(beta=...)), lower the learning rate, or raise kl_limit."
            )

    # ------------------------------------------------------------------ guards
    @contextlib.contextmanager
    def _dropout_off(self):
        """Eval mode for the whole step: dropout would make the first ratio differ from 1."""
        modules = [m for m in (self.policy, self.value_model) if m is not None]
        modes = [m.training for m in modules]
        for m in modules:
            m.eval()
        try:
            yield
        finally:
            for m, mode in zip(modules, modes):
                m.train(mode)

    def _out_of_memory(self, exc: BaseException, phase: str) -> StageError:
        traceback.clear_frames(exc.__traceback__)  # drop the step's tensors held by the traceback
        self.optimizer.zero_grad(set_to_none=True)
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        cfg = self.config
        partial = " Some minibatch updates of this step may have been applied." if phase == "update" else ""
        return StageError(
            f"{self.name}: out of memory during {phase} at step {self.step_count + 1} "
            f"(batch_size={cfg.batch_size} x {cfg.k} samples, max_new_tokens={cfg.max_new_tokens}).{partial} "
            f"The stage is paused and memory was freed. Lower batch_size (e.g. set(batch_size="
            f"{max(cfg.num_minibatches, cfg.batch_size // 2)})) or max_new_tokens, set eval_batch_size, "
            "or train LoRA adapters (lora=True) to save optimizer memory."
        )

    def _check_lengths(self, config: RLConfig) -> None:
        limit = getattr(self.policy.config, "max_position_embeddings", None) or getattr(
            self.policy.config, "n_positions", None
        )
        longest = max(len(t) for t in self._prompt_tokens)
        if limit is not None and longest + config.max_new_tokens > limit:
            raise ValueError(
                f"The longest prompt is {longest} tokens; with max_new_tokens={config.max_new_tokens} that is more "
                f"than the model's {limit} positions. Lower max_new_tokens to at most {limit - longest} or shorten "
                "the prompts."
            )

    # ------------------------------------------------------------------ hyper-parameters
    def _check_config(self, config: RLConfig) -> None:
        """`set()` checks the new prompt + response length against the model before applying it."""
        self._check_lengths(config)

    def _on_hparams_changed(self, changes: dict[str, Any]) -> None:
        cfg = self.config
        if "target_kl" in changes:
            self.kl_ctl = make_kl_controller(self.kl_ctl.value, cfg.target_kl, cfg.kl_horizon)
        if "beta" in changes:
            self.kl_ctl.value = float(cfg.beta)
        if "learning_rate" in changes:
            for group in self.optimizer.param_groups:
                group["lr"] = cfg.learning_rate

    def set_reward(self, reward: Any) -> None:
        """Score from the next step on with `reward` (e.g. a retrained reward model)."""
        with self._step_lock:
            self.reward = as_reward(reward)

    # ------------------------------------------------------------------ samples
    def _keep_samples(self, prompts, responses, per_sample, components, gold) -> None:
        scores, kl, kl3, rlhf_reward, lengths, eos = per_sample.tolist()
        step = self.step_count + 1
        samples = []
        for i, (prompt, response) in enumerate(zip(prompts, responses)):
            sample = {
                "step": step,
                "prompt": prompt,
                "response": response,
                "score": scores[i],
                "kl": kl[i],
                "kl_k3": kl3[i],
                "rlhf_reward": rlhf_reward[i],
                "length": int(lengths[i]),
                "eos": bool(eos[i]),
            }
            sample.update({f"score/{name}": float(values[i]) for name, values in components.items()})
            if gold is not None:
                sample["gold_score"] = gold[i]
            samples.append(sample)
        if self._samples and self._samples[-1][0] == step:  # a retried step replaces its samples
            self._samples.pop()
        self._samples.append((step, samples))

    def samples(self, n: int | None = None, step: int | None = None) -> list[dict[str, Any]]:
        """Samples of `step` (default: the latest), or the `n` most recent across kept steps.

        Each is a dict: step, prompt, response, score, kl, kl_k3, rlhf_reward, length, eos,
        score/<objective> for weighted rewards and gold_score when a gold judge is set.
        """
        if step is not None:
            for kept_step, samples in self._samples:
                if kept_step == step:
                    return list(samples[:n] if n is not None else samples)
            kept = [s for s, _ in self._samples]
            raise KeyError(f"Step {step} is not kept (kept: {kept[:1]}..{kept[-1:]}; see keep_sample_steps).")
        if n is None:
            return list(self._samples[-1][1]) if self._samples else []
        out: list[dict[str, Any]] = []
        for _, samples in reversed(self._samples):
            out.extend(samples[: n - len(out)])
            if len(out) >= n:
                break
        return out

    def samples_dataframe(self) -> pd.DataFrame:
        """Every kept sample as one DataFrame (one row per response)."""
        return pd.DataFrame([s for _, samples in self._samples for s in samples])

    # ------------------------------------------------------------------ checkpoints
    def _save_state(self, folder: Path) -> None:
        if self.uses_lora:  # the base (adapter layers removed) and the adapter, both by peft
            save_base(self.policy, model_path(folder, "policy"), self.tokenizer)
            self.policy.save_pretrained(model_path(folder, "adapter"), safe_serialization=True)
        else:
            save_model(folder, "policy", self.policy, self.tokenizer)
            save_model(folder, "reference", self.ref_policy)
        if self.value_head is not None:
            save_file(self.value_head.state_dict(), folder / "value_head.safetensors")
        if self.value_model is not None:
            save_model(folder, "value_model", self.value_model.backbone)
            save_file(self.value_model.head.state_dict(), folder / "value_head.safetensors")
        save_training_state(folder, self.optimizer)
        state = {
            "prompt_order": self.order.state_dict(),
            "kl_controller": self.kl_ctl.state_dict(),
            "kl_warned": self._kl_warned,
        }
        (folder / "rl_state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")
        (folder / "prompts.json").write_text(json.dumps(self.prompts), encoding="utf-8")
        with open(folder / "samples.jsonl", "w", encoding="utf-8") as f:
            for _, samples in self._samples:
                for sample in samples:
                    f.write(json.dumps(sample) + "\n")

    @classmethod
    def _from_checkpoint(
        cls,
        folder: Path,
        meta: dict[str, Any],
        reward: Any = None,
        gold: Any = None,
        device: str | torch.device | None = None,
        **kwargs: Any,
    ) -> RLStage:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from rlhf_lab.device import choose_device

        if reward is None:
            raise StageError(
                "RLStage.load(path, reward=...) needs the reward: functions and models are not saved."
            )
        config = config_from_dict(RLConfig, meta["config"])
        device = choose_device(device)
        tokenizer = AutoTokenizer.from_pretrained(model_path(folder, "policy"))

        def load(key: str):
            return AutoModelForCausalLM.from_pretrained(model_path(folder, key), dtype="auto").to(device)

        if config.lora:
            policy = load_lora(model_path(folder, "policy"), model_path(folder, "adapter")).to(device)
            ref = None
        else:
            policy, ref = load("policy"), load("reference")
        value_backbone = (
            load("value_model") if config.value == "separate" and config.estimator == "ppo" else None
        )
        prompts = json.loads((folder / "prompts.json").read_text(encoding="utf-8"))
        stage = cls(
            policy,
            tokenizer,
            prompts,
            reward,
            config=config,
            ref_policy=ref,
            value_model=value_backbone,
            gold=gold,
            **kwargs,
        )
        head = stage.value_head if stage.value_head is not None else getattr(stage.value_model, "head", None)
        if head is not None:
            head.load_state_dict(load_file(folder / "value_head.safetensors", device=str(device)))
        load_training_state(folder, stage.optimizer)
        state = json.loads((folder / "rl_state.json").read_text(encoding="utf-8"))
        stage.order.load_state_dict(state["prompt_order"])
        stage.kl_ctl = kl_controller_from_state(state["kl_controller"])
        stage._kl_warned = state["kl_warned"]
        by_step: dict[int, list[dict[str, Any]]] = {}
        with open(folder / "samples.jsonl", encoding="utf-8") as f:
            for line in f:
                sample = json.loads(line)
                by_step.setdefault(sample["step"], []).append(sample)
        stage._samples.extend(sorted(by_step.items()))
        return stage


PPOStage = RLStage


# ---------------------------------------------------------------------- helpers
class _PhaseTimer:
    """Seconds per phase of the last step (generation, scoring, forwards, update) for benchmarks."""

    def __init__(self, out: dict[str, float], phase: list[str]) -> None:
        self.out, self.phase = out, phase
        self.out.clear()
        self._t = None

    def start(self, name: str) -> None:
        self.stop()
        self.phase[0], self._t = name, time.perf_counter()

    def stop(self) -> None:
        if self._t is not None:
            self.out[self.phase[0]] = time.perf_counter() - self._t
            self._t = None


def _check_prompts(prompts: Any) -> list[str]:
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings, not one string.")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("The prompt list is empty: RL needs prompts to sample responses for.")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(
                f"Prompt {i} is empty or not a string ({prompt!r}); every prompt needs some text."
            )
    return prompts


def _in_chunks(batch: Rollout, rows: int | None, run) -> tuple:
    """run(part) over row chunks of `batch` (all at once when rows is None), outputs concatenated."""
    n = batch.response_ids.shape[0]
    if rows is None or rows >= n:
        return run(batch)
    parts = [
        run(batch.rows(torch.arange(s, min(s + rows, n), device=batch.response_ids.device)))
        for s in range(0, n, rows)
    ]
    return tuple(None if p[0] is None else torch.cat(p) for p in zip(*parts))
