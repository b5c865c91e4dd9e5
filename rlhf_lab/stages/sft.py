"""Supervised fine-tuning (SFT): teach the policy to answer like the demonstrations.

    >>> from rlhf_lab.stages.sft import SFTStage
    >>> sft = SFTStage(policy, tokenizer, [{"prompt": "Say hi.", "response": "Hi!"}], learning_rate=3e-3)
    >>> sft.step(20)                       # twenty minibatch updates, their metric rows
    >>> sft.evaluate(held_out_demos)       # mean loss per response token
    >>> sft.sample(["Say hi."])

Each step is a plain PyTorch update, written out here rather than delegated to TRL's
SFTTrainer: a Trainer owns its loop, so driving it one step at a time from a notebook means a
thread parked inside a callback, a schedule tied to `max_steps` and private internals
(trl/trainer/sft_trainer.py, TRL 1.16, whose loop is `transformers.Trainer.train`). The loop is a dozen lines, and keeping it visible is the point of a lab:

1. take the next `batch_size` demonstrations (a seeded shuffle per epoch, resumable),
2. lay each out as `format_prompt(prompt)` + response + EOS, the exact text the policy is
   sampled on later, and mask the prompt and the padding out of the labels (-100), so the loss
   is cross-entropy on the response tokens only,
3. AdamW with linear warm-up, gradient clipping, and `check_finite(loss)` before backward.

With `lora=True` the policy is wrapped in a peft LoRA adapter: only the adapter trains, the
checkpoint's policy weights are the adapter alone, and `merge()` folds it back into the base
model so that later stages (reward model, PPO, DPO) see one ordinary model.

Metrics: `loss/sft`, `train/learning_rate`, `train/grad_norm`, `train/tokens`, `train/epoch`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from rlhf_lab.chat import format_conversation, format_prompt
from rlhf_lab.demonstrations import Demo, DemoError, load_demos, save_demos
from rlhf_lab.device import autocast_for, choose_device
from rlhf_lab.generation import generate
from rlhf_lab.hparams import above, at_least, between, check_fields
from rlhf_lab.lora import (
    LORA_ALPHA,
    LORA_R,
    LORA_TARGET_MODULES,
    is_peft_model,
    load_lora,
    save_base,
    wrap_lora,
)
from rlhf_lab.optim import adamw, clip_gradients, decay_groups, optimizer_params
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

IGNORE_INDEX = -100  # label value cross_entropy skips: prompt tokens and padding


SFT_RANGES = {
    "learning_rate": at_least(0),
    "batch_size": at_least(1),
    "max_length": at_least(2),
    "weight_decay": at_least(0),
    "warmup_steps": at_least(0),
    "max_grad_norm": at_least(0),
    "lora_r": at_least(1),
    "lora_alpha": above(0),
    "lora_dropout": between(0, 1, high_open=True),
    "eval_batch_size": at_least(1),
}
"""Allowed values of SFTConfig's numeric fields (checked by `validate()` through rlhf_lab.hparams)."""


@dataclass
class SFTConfig:
    """Hyper-parameters of supervised fine-tuning.

    `learning_rate` and `batch_size` may be changed between steps with `stage.set(...)`;
    the new values apply from the next step.
    """

    learning_rate: float = 2e-5
    """Peak AdamW learning rate (after warm-up). Tiny models want ~3e-3, 100M+ models ~1e-5..5e-5."""
    batch_size: int = 8
    """Demonstrations per optimisation step."""
    max_length: int = 512
    """Longest prompt + response in tokens; longer responses are cut at the end."""
    weight_decay: float = 0.0
    """AdamW weight decay, applied to matrices only (not biases or norms)."""
    warmup_steps: int = 0
    """Steps over which the learning rate rises linearly from ~0 to `learning_rate`."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this value (0 disables clipping). Formerly `grad_clip`, still
    accepted as a deprecated keyword."""
    seed: int = 0
    """Seed of the data order (each epoch is a fresh permutation drawn from it)."""
    lora: bool = False
    """Train a LoRA adapter (peft) instead of all weights."""
    lora_r: int = LORA_R
    """LoRA rank (rlhf_lab.lora's default, shared by every stage)."""
    lora_alpha: int = LORA_ALPHA
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA branch."""
    lora_target_modules: str | list[str] | None = LORA_TARGET_MODULES
    """Modules that get adapters: "all-linear" (peft), names such as ["q_proj", "v_proj"], or None = peft's default."""
    lora_save_base: bool = True
    """With LoRA, also write the frozen base model into checkpoints so `load` needs nothing else.
    False keeps checkpoints to the adapter; then pass a fresh copy of the base model to
    `SFTStage.load(path, policy=...)`."""
    eval_batch_size: int = 16
    """Batch size of `evaluate()`."""
    mixed_precision: str = "no"
    """"bf16" runs forwards under bf16 autocast (fp32 master weights); "no" leaves them alone. The
    smollm2-135m preset asks for bf16 on CPUs with native bf16 (Lab)."""

    deprecated_names: ClassVar[dict[str, str]] = {"grad_clip": "max_grad_norm"}

    @property
    def grad_clip(self) -> float:
        """Deprecated name of `max_grad_norm` (kept for one release)."""
        return self.max_grad_norm

    def validate(self) -> SFTConfig:
        """Raise ValueError for a setting that cannot work (called by the Stage base)."""
        check_fields(self, SFT_RANGES)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.max_length < 2:
            raise ValueError(f"max_length must be at least 2, got {self.max_length}")
        return self


class SFTStage(Stage):
    """Supervised fine-tuning of a causal LM on (prompt, response) demonstrations."""

    name = "sft"
    mutable_hparams = ("learning_rate", "batch_size")

    def __init__(
        self,
        policy: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        demos: Any,
        config: SFTConfig | None = None,
        *,
        clock: StepClock | None = None,
        checkpoint_every: int | None = None,
        checkpoint_dir: str | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(
            make_config(config, SFTConfig, overrides),
            clock=clock,
            checkpoint_every=checkpoint_every,
            checkpoint_dir=checkpoint_dir,
        )
        self.tokenizer = tokenizer
        self.demos: list[Demo] = load_demos(demos)
        self.examples = [self._tokenize(d, f"row {i}") for i, d in enumerate(self.demos)]
        cfg = self.config
        self.model = (
            wrap_lora(
                policy,
                r=cfg.lora_r,
                alpha=cfg.lora_alpha,
                dropout=cfg.lora_dropout,
                target_modules=cfg.lora_target_modules,
            )
            if cfg.lora
            else policy
        )
        self.device = next(self.model.parameters()).device
        self.optimizer = self._make_optimizer()
        self.samples_seen = 0  # position in the data stream: epoch = samples_seen // len(demos)

    # ------------------------------------------------------------------ data
    def _tokenize(self, demo: Demo, where: str) -> tuple[list[int], int]:
        """Token ids of prompt + response + EOS, and how many of them belong to the prompt.

        The prompt and the response are tokenised separately and concatenated: that is exactly
        what the policy sees when it is sampled (prompt ids, then generated ids).
        """
        prompt_text = format_prompt(self.tokenizer, demo.prompt)
        full_text = format_conversation(self.tokenizer, demo.prompt, demo.response)
        prompt_ids = self.tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
        response_ids = self.tokenizer(full_text[len(prompt_text) :], add_special_tokens=False)["input_ids"]
        if len(prompt_ids) >= self.config.max_length:
            raise DemoError(
                f"{where}: the prompt alone is {len(prompt_ids)} tokens, which leaves no room for the response "
                f"within max_length={self.config.max_length}. Shorten it, drop the row or raise max_length."
            )
        ids = (prompt_ids + response_ids)[: self.config.max_length]
        return ids, len(prompt_ids)

    def encode_batch(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """Right-padded input ids, attention mask and labels (-100 on prompt and padding) for some demos."""
        return collate([self.examples[i] for i in indices], self._pad_id, self.device)

    @property
    def _pad_id(self) -> int:
        # Any id will do: padding is masked out of both the attention and the labels.
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else self.tokenizer.eos_token_id

    def _epoch_order(self, epoch: int) -> list[int]:
        # One generator per epoch: the order depends only on (seed, epoch), so a resumed run
        # needs nothing but `samples_seen` to continue where it was.
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.examples), generator=generator).tolist()

    def _next_indices(self, count: int) -> list[int]:
        """The next `count` demos of the stream (crossing into the next epoch when needed)."""
        n, seen, out = len(self.examples), self.samples_seen, []
        while len(out) < count:
            epoch, offset = divmod(seen, n)
            take = min(count - len(out), n - offset)
            out.extend(self._epoch_order(epoch)[offset : offset + take])
            seen += take
        return out

    # ------------------------------------------------------------------ model
    def _make_optimizer(self) -> torch.optim.Optimizer:
        return adamw(
            decay_groups(self.model.parameters(), self.config.weight_decay), lr=self.config.learning_rate
        )

    @property
    def policy(self) -> PreTrainedModel:
        """The underlying causal LM (without the peft wrapper)."""
        return self.model.get_base_model() if self.is_lora else self.model

    @property
    def is_lora(self) -> bool:
        """True while the policy carries a peft adapter (checked without importing peft)."""
        return is_peft_model(self.model)

    def merge(self) -> PreTrainedModel:
        """Fold the LoRA adapter into the base weights and return the plain model.

        The base model object is modified in place, so a Lab's policy is the merged model too.
        Later steps of this stage (if any) fine-tune all weights with a fresh optimizer.
        """
        with self._step_lock:
            if not self.is_lora:
                return self.model
            self.model = self.model.merge_and_unload()
            self.model.requires_grad_(True)  # peft froze the base weights; from now on they all train
            self.config.lora = False
            self.optimizer = self._make_optimizer()
            return self.model

    def current_learning_rate(self) -> float:
        warmup = self.config.warmup_steps
        factor = min(1.0, (self.step_count + 1) / warmup) if warmup > 0 else 1.0
        return self.config.learning_rate * factor

    # ------------------------------------------------------------------ training
    def _train_step(self) -> dict[str, Any]:
        indices = self._next_indices(self.config.batch_size)
        batch = self.encode_batch(indices)
        lr = self.current_learning_rate()
        for group in self.optimizer.param_groups:
            group["lr"] = lr

        self.model.train()
        loss_sum, n_tokens = response_loss(self.model, batch, self.config.mixed_precision)
        loss = loss_sum / max(n_tokens, 1)
        self.check_finite(loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_gradients(optimizer_params(self.optimizer), self.config.max_grad_norm)
        self.optimizer.step()
        self.samples_seen += len(indices)  # only once the step is applied
        return {
            "loss/sft": loss.item(),
            "train/learning_rate": lr,
            "train/grad_norm": float(grad_norm),
            "train/tokens": n_tokens,
            "train/epoch": self.samples_seen / len(self.examples),
        }

    # ------------------------------------------------------------------ conveniences
    @torch.no_grad()
    def evaluate(self, demos: Any = None, batch_size: int | None = None) -> float:
        """Mean cross-entropy per response token on `demos` (default: the training demos)."""
        examples = (
            self.examples
            if demos is None
            else [self._tokenize(d, f"row {i}") for i, d in enumerate(load_demos(demos))]
        )
        size = batch_size or self.config.eval_batch_size
        with self._step_lock:
            was_training = self.model.training
            self.model.eval()
            total, count = 0.0, 0
            try:
                for start in range(0, len(examples), size):
                    batch = collate(examples[start : start + size], self._pad_id, self.device)
                    loss_sum, n = response_loss(self.model, batch, self.config.mixed_precision)
                    total, count = total + loss_sum.item(), count + n
            finally:
                self.model.train(was_training)
        return total / max(count, 1)

    def sample(self, prompts: list[str], **kwargs: Any) -> list[str]:
        """Responses of the current policy (see rlhf_lab.generation.generate for the options)."""
        with self._step_lock:
            return generate(self.model, self.tokenizer, list(prompts), **kwargs)

    # ------------------------------------------------------------------ checkpoints
    def _save_state(self, folder: Path) -> None:
        # For a PeftModel, save_pretrained writes the adapter only (adapter_model.safetensors).
        save_model(folder, "policy", self.model, self.tokenizer)
        if self.is_lora and self.config.lora_save_base:
            save_base(self.model, model_path(folder, "base"))
        save_training_state(folder, self.optimizer)
        save_demos(self.demos, folder / "demos.jsonl")
        (folder / "sft_state.json").write_text(json.dumps({"samples_seen": self.samples_seen}))

    @classmethod
    def _from_checkpoint(
        cls,
        folder: Path,
        meta: dict[str, Any],
        *,
        policy: PreTrainedModel | None = None,
        device: str | torch.device | None = None,
        clock: StepClock | None = None,
        **kwargs: Any,
    ) -> SFTStage:
        config = config_from_dict(SFTConfig, meta["config"])
        source = model_path(folder, "policy")
        tokenizer = AutoTokenizer.from_pretrained(source)
        if config.lora:
            if policy is None:
                if not model_path(folder, "base").is_dir():
                    raise FileNotFoundError(
                        f"{folder} holds only a LoRA adapter (lora_save_base=False): pass a fresh "
                        "copy of the base model, SFTStage.load(path, policy=load_policy(...)[0])."
                    )
                policy = model_path(folder, "base")
            model = load_lora(policy, source)
        else:
            model = AutoModelForCausalLM.from_pretrained(source)
        model.to(choose_device(device))
        demos = load_demos(folder / "demos.jsonl", max_chars=10**12)
        stage = cls(model, tokenizer, demos, config, clock=clock, **kwargs)
        load_training_state(folder, stage.optimizer)
        stage.samples_seen = json.loads((folder / "sft_state.json").read_text())["samples_seen"]
        return stage


def collate(
    examples: list[tuple[list[int], int]], pad_id: int, device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """Pad (ids, n_prompt) examples on the right; labels copy the ids except prompt and padding (-100)."""
    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (ids, n_prompt) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
        labels[row, n_prompt : len(ids)] = torch.tensor(ids[n_prompt:], dtype=torch.long)
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": attention_mask.to(device),
        "labels": labels.to(device),
    }


def response_loss(
    model: PreTrainedModel, batch: dict[str, torch.Tensor], mixed_precision: str = "no"
) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over labelled (response) tokens, and how many there were."""
    with autocast_for(batch["input_ids"].device, mixed_precision):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    # Position t predicts token t + 1.
    logits = logits[:, :-1].float()
    targets = batch["labels"][:, 1:]
    loss_sum = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return loss_sum, int((targets != IGNORE_INDEX).sum())
