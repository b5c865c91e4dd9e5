"""`RLStage`: PPO (and RLOO, GRPO, REINFORCE) for language models, one explicit `step()` at a time.

    >>> from rlhf_lab.rl import RLStage
    >>> ppo = RLStage(policy, tok, prompts, reward=rm, beta=0.1)            # estimator="ppo"
    >>> ppo.step()                     # rollout -> score -> KL-shaped rewards -> advantages -> K epochs
    >>> ppo.pause(); ppo.set(beta=0.2, temperature=0.7); ppo.resume()
    >>> ppo.samples(8)                 # the latest prompts/responses/rewards, for the labeller
    >>> ppo.set_reward(retrained_rm)   # the flywheel: swap the reward, keep the policy and optimizer

One step (`_train_step` reads top to bottom like the algorithm):
1. rollout: `batch_size` prompts (seeded, resumable order), `samples_per_prompt` responses each;
2. score: the reward sees prompt and response text; learned reward models are normalised (mean 0, std 1
   on the starting policy's samples: rlhf_lab.rl.normalization), each one on its own where several
   objectives are combined; a missing-EOS penalty and clipping apply;
3. one no-grad pass each for the old log-probs (+ values) and the frozen reference's log-probs;
   KL per token by k1 and k3; PPO adds -beta * KL to every token and the score on the last one;
4. advantages: GAE (ppo), leave-one-out (rloo), group-normalised (grpo) or mean baseline (reinforce);
5. `num_epochs` passes over `num_minibatches` minibatches of the clipped surrogate (+ clipped value
   loss for PPO, + beta * k3 KL in the loss for GRPO), gradient clipping, AdamW (rlhf_lab.rl.update;
   `gradient_accumulation_steps` slices each minibatch to bound memory, same gradient).

Mutable while paused (`stage.set(...)`, applied from the next step): beta, target_kl (None switches
to a fixed beta), learning_rate, temperature, top_k, top_p, batch_size, max_new_tokens, kl_limit.

Metrics (names and meanings in rlhf_lab.metrics): objective/{kl, kl_k3, scores, raw_scores, rlhf_reward,
non_score_reward, entropy, beta, kl_warning}, policy/{entropy, approxkl, clipfrac, ratio}, loss/{policy,
total}, train/{learning_rate, grad_norm}, response/{length, eos_rate}; PPO adds loss/value and val/{clipfrac,
mean, explained_variance}; objective/scores/<name> per weighted or routed objective (and
objective/raw_scores/<name> for those that are reward models); objective/gold_scores with `gold=`.
Update metrics are means over all minibatches; `last_minibatch_stats` keeps each minibatch's, `last_timings`
the seconds per phase.

Device-agnostic: the models' device decides; on CUDA forwards run under bf16 autocast (fp32 master weights);
AdamW is fused on CUDA and CPU (rlhf_lab.optim); `compile_generation` gives a static KV cache (and compiled
decoding on CUDA). Metric values stay on the device through the update loop and come to the host once per
step; the one deliberate sync inside the loop is `check_finite(loss)` before each backward, which the stage
contract requires so a NaN never reaches the weights.
"""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from rlhf_lab.chat import format_prompt
from rlhf_lab.device import autocast_for
from rlhf_lab.errors import StageError
from rlhf_lab.lora import check_no_foreign_adapter, is_peft_model, wrap_lora
from rlhf_lab.models.helpers import freeze
from rlhf_lab.optim import adamw
from rlhf_lab.rl.advantages import estimator_advantages
from rlhf_lab.rl.checkpoint import load_loop_state, load_models, load_value_head, save_loop_state, save_models
from rlhf_lab.rl.compiled import RegionalCompile
from rlhf_lab.rl.config import RLConfig
from rlhf_lab.rl.distributed import ranks_continue, stopping_together, world_size
from rlhf_lab.rl.guards import check_kl, check_lengths, check_prompts, dropout_off, out_of_memory_error
from rlhf_lab.rl.kl import kl_estimate, kl_k1, kl_k3, make_kl_controller
from rlhf_lab.rl.logprobs import token_logprobs
from rlhf_lab.rl.normalization import (
    ObjectiveNormalizers,
    RewardNormalizer,
    fit_sample,
    pin_scale,
    scaled_part,
)
from rlhf_lab.rl.rewards import RewardOutput, as_reward, check_finite_scores, warn_if_untrained
from rlhf_lab.rl.rollout import (
    PromptOrder,
    Rollout,
    decode_responses,
    in_chunks,
    left_pad,
    position_ids_from_mask,
    response_forward,
    sample_responses,
)
from rlhf_lab.rl.samples import SampleBuffer
from rlhf_lab.rl.step_metrics import PhaseTimer, minibatch_stats, step_metrics
from rlhf_lab.rl.update import update_policy
from rlhf_lab.rl.value import SeparateValueModel, ValueHead, hidden_size, param_groups
from rlhf_lab.stages.base import (
    Stage,
    StepClock,
    config_from_dict,
    load_training_state,
    make_config,
    save_training_state,
)


class RLStage(Stage):
    """RL against a reward with a KL penalty to a frozen reference. See the module docstring."""

    name = "rl"  # each instance is named by its estimator: "ppo", "rloo", "grpo" or "reinforce"
    released_attributes = ("ref_policy", "value_model", "value_head")  # what release() drops
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
        self.prompts = check_prompts(prompts)
        self._prompt_tokens = [
            tokenizer(format_prompt(tokenizer, p), add_special_tokens=False)["input_ids"]
            for p in self.prompts
        ]
        self.reward_source, self.reward = reward, as_reward(reward)
        warn_if_untrained(reward)
        self.gold = gold

        # Models. The reference is a frozen deep copy unless given, or the adapter-off policy with LoRA.
        check_no_foreign_adapter(policy, "rl")
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
        check_lengths(self.policy, self._prompt_tokens, config.max_new_tokens)

        groups = param_groups(self.policy, self.value_head, self.value_model, config)
        self.params = [p for group in groups for p in group["params"]]
        self.optimizer = adamw(groups, lr=config.learning_rate, eps=1e-5, weight_decay=0.0)
        self.kl_ctl = make_kl_controller(config.beta, config.target_kl, config.kl_horizon_rollouts)
        self.normalizer = RewardNormalizer()
        self.objective_normalizers = ObjectiveNormalizers()
        pin_scale(self, config.reward_scale)
        self._world_size = world_size()
        self.order = PromptOrder(len(self.prompts), seed=config.seed or 0)
        self.sample_buffer = SampleBuffer(config.keep_sample_steps)
        self._kl_warned = False
        self._compiled_policy: torch.nn.Module | None = None
        self._regional: RegionalCompile | None = None
        self.last_timings: dict[str, float] = {}
        self.last_minibatch_stats: list[dict[str, float]] = []

    @property
    def train_policy(self) -> torch.nn.Module:
        """The module the update's forward runs through: the policy, or (compile_update="reduce-overhead")
        its whole-model compiled wrapper, which shares the policy's parameters, so the optimizer and
        checkpoints are unaffected. compile_update=True compiles block by block instead (`compiled_update`)."""
        if self.config.compile_update == "reduce-overhead" and self._compiled_policy is None:
            self._compiled_policy = torch.compile(self.policy, dynamic=True, mode="reduce-overhead")
        return self.policy if self._compiled_policy is None else self._compiled_policy

    def compiled_update(self) -> contextlib.AbstractContextManager:
        """Around the update's minibatches: with compile_update=True (or "default") the policy's
        transformer blocks run compiled one by one (rlhf_lab.rl.compiled: seconds of compiling instead
        of minutes), or the whole policy if it has no list of identical blocks; else nothing."""
        if self.config.compile_update not in (True, "default"):
            return contextlib.nullcontext()
        if self._regional is None and self._compiled_policy is None:
            try:
                self._regional = RegionalCompile(self.policy)
            except ValueError:  # no repeated blocks: compile the whole model instead (train_policy)
                self._compiled_policy = torch.compile(self.policy, dynamic=True)
        return self._regional.active() if self._regional is not None else contextlib.nullcontext()

    @property
    def uses_cuda_graphs(self) -> bool:
        """Whether the update's forward replays CUDA graphs (compile_update="reduce-overhead" on CUDA)."""
        return self.config.compile_update == "reduce-overhead" and self.device.type == "cuda"

    # ------------------------------------------------------------------ one step
    def _train_step(self) -> dict[str, Any]:
        phase = ["start"]
        try:
            with self._dropout_off(), stopping_together():  # a failing rank stops the others too
                return self._rl_step(phase)
        except torch.OutOfMemoryError as exc:
            step, config, optimizer = self.step_count + 1, self.config, self.optimizer
            error = out_of_memory_error(exc, self.name, phase[0], step, config, optimizer, self.device)
            raise error from exc

    def _rl_step(self, phase: list[str]) -> dict[str, Any]:
        cfg, timer = self.config, PhaseTimer(self.last_timings, phase)

        # 1. Rollout: batch_size prompts, k samples each (a prompt's k samples are adjacent rows).
        timer.start("generation")
        rows = [i for i in self.order.take(cfg.batch_size) for _ in range(cfg.k)]
        prompts = [self.prompts[i] for i in rows]
        batch = self._sample([self._prompt_tokens[i] for i in rows])
        responses = decode_responses(self.tokenizer, batch)
        mask = batch.response_mask

        # 2. Score the text; the score arrives at the last response token.
        timer.start("scoring")
        raw = self.reward(prompts, responses)
        check_finite_scores(raw.scores, prompts, responses)
        reward = self._normalized(raw, prompts)
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
        self.sample_buffer.add(self.step_count + 1, prompts, responses, per_sample, reward.components, gold)
        mean_kl = float(per_sample[1].mean())
        self._kl_warned = check_kl(mean_kl, cfg, name=self.name, warned=self._kl_warned)
        ranks_continue(self.name, self.step_count + 1)  # multi-process: all ranks update, or none

        # 4. Advantages.
        advantages, returns = estimator_advantages(cfg, scores, penalty, old_values, mask, beta)

        # 5. K epochs of minibatch updates.
        timer.start("update")
        stats = update_policy(self, batch, old_logprobs, ref_logprobs, advantages, returns, old_values, beta)
        timer.stop()

        # 6. KL control and metrics.
        self.kl_ctl.update(mean_kl, len(rows))
        self.last_minibatch_stats = minibatch_stats(stats)
        metrics = step_metrics(
            per_sample,
            old_entropy,
            mask,
            old_values,
            returns,
            stats,
            reward.components,
            gold,
            beta=beta,
            kl_warning=cfg.kl_warning,
            learning_rate=self.optimizer.param_groups[0]["lr"],
        )
        raw_objectives = {  # reward models among several objectives: what each said before rescaling
            f"objective/raw_scores/{name}": float(raw.components[name].mean())
            for name in self.objective_normalizers.fitted
            if name in raw.components
        }
        return {"objective/raw_scores": float(raw.scores.mean())} | raw_objectives | metrics

    # ------------------------------------------------------------------ the pieces of a step
    def _normalized(self, raw: RewardOutput, prompts: list[str]) -> RewardOutput:
        """The reward after normalisation (fitted on the first step's samples), or unchanged: by default a
        reward model alone is rescaled, and so is each reward model among several objectives before they
        are combined; `normalize_reward=True` rescales the total instead, False nothing."""
        part = scaled_part(self.reward, self.reward_source, self.config.normalize_reward)
        if part == "objectives":
            if self.objective_normalizers.unfitted(self.reward):
                self.objective_normalizers.fit(self.reward, self._fit_sample(raw))
            return self.objective_normalizers(self.reward, raw, prompts)
        if part is None:
            return raw
        if not self.normalizer.fitted:  # warns in plain words when the reward is nearly flat
            self.normalizer.fit(self._fit_sample(raw).scores)
        return RewardOutput(self.normalizer(raw.scores), raw.components)

    def _fit_sample(self, first: RewardOutput) -> RewardOutput:
        """The scores to fit the scale on: the first step's or `reward_norm_samples` fresh answers'."""
        n, chunk = self.config.reward_norm_samples, self.config.rollouts_per_step
        answer = lambda tokens: decode_responses(self.tokenizer, self._sample(tokens))  # noqa: E731
        return fit_sample(first, n, self.prompts, self._prompt_tokens, answer, self.reward, chunk)

    def _dropout_off(self):
        """Eval mode for the whole step (rlhf_lab.rl.guards.dropout_off)."""
        return dropout_off(self.policy, self.value_model)

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

        return in_chunks(batch, self.config.eval_batch_size, run)

    def _reference_pass(self, batch: Rollout) -> torch.Tensor:
        def run(part: Rollout):
            with autocast_for(self.device, self.config.mixed_precision):
                if self.ref_policy is None:  # LoRA: the reference is the base model, adapter off
                    with self.policy.disable_adapter():
                        logits, _ = response_forward(self.policy, part)
                else:
                    logits, _ = response_forward(self.ref_policy, part)
            return (self._logprobs(logits, part)[0],)

        return in_chunks(batch, self.config.eval_batch_size, run)[0]

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

    # ------------------------------------------------------------------ hyper-parameters
    def _check_config(self, config: RLConfig) -> None:
        """`set()` checks the new prompt + response length against the model before applying it."""
        check_lengths(self.policy, self._prompt_tokens, config.max_new_tokens)

    def _on_hparams_changed(self, changes: dict[str, Any]) -> None:
        cfg = self.config
        if "target_kl" in changes:
            self.kl_ctl = make_kl_controller(self.kl_ctl.value, cfg.target_kl, cfg.kl_horizon_rollouts)
        if "beta" in changes:
            self.kl_ctl.value = float(cfg.beta)
        if "learning_rate" in changes:
            self.optimizer.param_groups[0]["lr"] = cfg.learning_rate
            if len(self.optimizer.param_groups) > 1:  # the value head
                self.optimizer.param_groups[1]["lr"] = cfg.value_lr

    def set_reward(self, reward: Any) -> None:
        """Score from the next step on with `reward` (e.g. a retrained reward model); its normalisation is
        fitted again on that step's samples."""
        warn_if_untrained(reward)
        with self._step_lock:
            self.reward_source, self.reward = reward, as_reward(reward)
            self.normalizer.reset()
            self.objective_normalizers.reset()

    # ------------------------------------------------------------------ samples
    def samples(self, n: int | None = None, step: int | None = None) -> list[dict[str, Any]]:
        """Samples of `step` (default: the latest), or the `n` most recent across kept steps.

        Each is a dict: step, prompt, response, score, kl, kl_k3, rlhf_reward, length, eos,
        score/<objective> for weighted rewards and gold_score when a gold judge is set.
        """
        return self.sample_buffer.get(n, step)

    def samples_dataframe(self) -> pd.DataFrame:
        """Every kept sample as one DataFrame (one row per response)."""
        return self.sample_buffer.dataframe()

    # ------------------------------------------------------------------ checkpoints
    def _save_state(self, folder: Path) -> None:
        save_models(folder, self)
        save_training_state(folder, self.optimizer)
        save_loop_state(folder, self)
        self.sample_buffer.save(folder / "samples.jsonl")

    @classmethod
    def _from_checkpoint(
        cls,
        folder: Path,
        meta: dict[str, Any],
        reward: Any = None,
        gold: Any = None,
        device: str | torch.device | None = None,
        prompts: list[str] | None = None,
        **kwargs: Any,
    ) -> RLStage:
        """`prompts`: train on these instead of the saved ones (a data-parallel rank's own share); their
        order is replayed to where the checkpoint's run was."""
        from rlhf_lab.device import choose_device

        if reward is None:
            raise StageError(
                "RLStage.load(path, reward=...) needs the reward: functions and models are not saved."
            )
        config = config_from_dict(RLConfig, meta["config"])
        device = choose_device(device)
        models = load_models(folder, config, device)
        saved = json.loads((folder / "prompts.json").read_text(encoding="utf-8"))
        own = prompts is not None and list(prompts) != saved
        tokenizer, policy = models.pop("tokenizer"), models.pop("policy")
        stage = cls(
            policy, tokenizer, prompts if own else saved, reward, config=config, gold=gold, **models, **kwargs
        )
        load_value_head(folder, stage, device)
        load_training_state(folder, stage.optimizer)
        load_loop_state(folder, stage)
        if own:  # each step drew batch_size prompts from the order (PromptOrder depends on nothing else)
            stage.order = PromptOrder(len(stage.prompts), seed=config.seed or 0)
            stage.order.take(meta["step_count"] * config.batch_size)
        stage.sample_buffer.load(folder / "samples.jsonl")
        return stage


PPOStage = RLStage
