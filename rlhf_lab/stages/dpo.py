"""DPO / IPO: align the policy directly on preference pairs, no reward model, no rollouts.

    >>> dpo = lab.dpo(beta=0.1)                 # pairs from the lab's preference store
    >>> dpo.step(20)                            # rows with loss/dpo, rewards/accuracy, objective/kl, ...
    >>> dpo.evaluate(held_out)                  # implicit-reward accuracy and margins on other pairs
    >>> labeller.add(...); dpo.refresh()        # new labels join the next steps
    >>> dpo.save("runs/dpo"); dpo = DPOStage.load("runs/dpo")

Each pair (x, y_w, y_l) with target t = P(y_w beats y_l) gives, with log-probs summed over the
response tokens only (the prompt is context, not a prediction),

    h = [log pi(y_w|x) - log ref(y_w|x)] - [log pi(y_l|x) - log ref(y_l|x)]
    sigmoid (DPO): loss = -t * logsigmoid(beta * h) - (1 - t) * logsigmoid(-beta * h)
    ipo          : loss = t * (h' - 1/(2 beta))^2 + (1 - t) * (h' + 1/(2 beta))^2

For t = 1 these are the DPO and IPO losses. The soft forms are the expected loss over the label
(t from merged annotator votes, then label smoothing eps flips it: t <- t(1 - eps) + (1 - t) eps,
which is TRL's cDPO). IPO's h' uses per-token *mean* log-ratios, as TRL's "ipo" loss does (its
authors confirmed the paper's numbers use that normalisation); DPO uses sums. The implicit reward
of a response is beta * (log pi - log ref); `rewards/*` report it.

Why our own loop instead of driving TRL's DPOTrainer from a thread: that trainer owns the loop
(schedule tied to max_steps, data re-read only on train()), so pausing, changing beta, re-reading
the store and resuming mid-run all fight it (trl/trainer/dpo_trainer.py, TRL 1.16: the loop is
`transformers.Trainer.train`). The math is a dozen lines; here
it is in plain sight, and tests check it against DPOTrainer.compute_loss on the same pairs.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf_lab.chat import format_prompt, response_suffix
from rlhf_lab.device import autocast_for
from rlhf_lab.generation import generate
from rlhf_lab.hparams import above, at_least, between, check_fields
from rlhf_lab.lora import check_no_foreign_adapter, is_peft_model
from rlhf_lab.models.helpers import freeze
from rlhf_lab.optim import adamw, clip_gradients
from rlhf_lab.reward.pairs import PairRecord, as_pair_records
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

LOSS_TYPES = ("sigmoid", "ipo")


DPO_RANGES = {
    "beta": above(0),
    "label_smoothing": between(0, 0.5, high_open=True),
    "learning_rate": at_least(0),
    "batch_size": at_least(1),
    "max_length": at_least(2),
    "max_grad_norm": at_least(0),
    "weight_decay": at_least(0),
    "max_new_tokens": at_least(1),
}
"""Allowed values of DPOConfig's numeric fields (checked by `validate()` through rlhf_lab.hparams)."""


@dataclass
class DPOConfig:
    """Hyper-parameters of a DPO/IPO stage. `beta`, `learning_rate`, `batch_size` may change between steps."""

    beta: float = 0.1
    """Strength of the pull towards the reference (DPO's KL coefficient; IPO's tau). Larger = stay closer."""
    loss_type: str = "sigmoid"
    """"sigmoid" (DPO, Rafailov et al. 2023) or "ipo" (squared loss, Azar et al. 2023; resists over-fitting)."""
    label_smoothing: float = 0.0
    """Assumed probability that a label is flipped (cDPO): targets move from 1 towards 0.5. 0 = trust labels."""
    soft_targets: bool = True
    """Use each pair's target (fraction of annotator votes for chosen); False treats every pair as hard (t = 1)."""
    learning_rate: float = 5e-6
    """AdamW learning rate, constant (a notebook run has no known end for a schedule to decay towards)."""
    batch_size: int = 8
    """Pairs per optimisation step."""
    max_length: int = 512
    """Tokens per prompt + response; longer responses are cut at the end, then prompts at the start."""
    max_grad_norm: float = 1.0
    """Clip the gradient norm to this (0 = no clipping; train/grad_norm is logged before clipping)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    dropout: bool = False
    """Keep the policy's dropout on while training. Off by default: with it on, policy and reference differ
    from step one by noise alone (the first loss is not log 2 and the KL reads non-zero)."""
    max_new_tokens: int = 48
    """Length of the responses `sample()` draws."""
    seed: int = 0
    """Seed of the pair order (each pass over the pairs is a fresh permutation drawn from seed and pass)."""
    mixed_precision: str = "no"
    """"bf16" runs policy and reference forwards under bf16 autocast (fp32 master weights); "no" leaves
    them alone. The smollm2-135m preset asks for bf16 on CPUs with native bf16 (Lab)."""

    def validate(self) -> DPOConfig:
        """Raise ValueError for a setting that cannot work (called by the Stage base)."""
        check_fields(self, DPO_RANGES)
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        if not self.beta > 0:
            raise ValueError(f"beta must be positive, got {self.beta}")
        if not 0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.max_length < 2:
            raise ValueError(f"max_length must be at least 2, got {self.max_length}")
        return self


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    *,
    beta: float,
    loss_type: str = "sigmoid",
    targets: torch.Tensor | None = None,
    chosen_tokens: torch.Tensor | None = None,
    rejected_tokens: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-pair DPO or IPO loss from summed response log-probs (see the module docstring).

    `targets` = P(chosen beats rejected) per pair (default 1). IPO needs the response token
    counts to average the log-ratios per token.
    """
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    t = torch.ones_like(chosen_ratio) if targets is None else targets.to(chosen_ratio)
    if loss_type == "sigmoid":
        h = chosen_ratio - rejected_ratio
        return -t * F.logsigmoid(beta * h) - (1 - t) * F.logsigmoid(-beta * h)
    if loss_type == "ipo":
        if chosen_tokens is None or rejected_tokens is None:
            raise ValueError("the IPO loss needs chosen_tokens and rejected_tokens (response lengths)")
        h = chosen_ratio / chosen_tokens.clamp(min=1) - rejected_ratio / rejected_tokens.clamp(min=1)
        goal = 1 / (2 * beta)
        return t * (h - goal) ** 2 + (1 - t) * (h + goal) ** 2
    raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")


def sequence_logps(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    mixed_precision: str = "no",
) -> torch.Tensor:
    """Sum of log p(token | earlier tokens) over the tokens where `response_mask` is 1, per row."""
    with autocast_for(input_ids.device, mixed_precision):
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    logits = logits[:, :-1].float()
    targets = input_ids[:, 1:]
    # gather - logsumexp: the log-softmax of the picked tokens without a second vocab-sized tensor.
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
    return (picked * response_mask[:, 1:]).sum(-1)


@dataclass(frozen=True)
class _Tokenized:
    prompt: list[int]
    chosen: list[int]
    rejected: list[int]
    target: float


class DPOStage(Stage):
    """DPO/IPO on preference pairs from a store or a list, against a frozen reference.

    The reference is a frozen deep copy of `policy` taken here, unless `ref_policy` is given; a
    LoRA (PEFT) policy uses itself with the adapter disabled instead (no copy). A policy that
    carries another stage's adapter (a LoRA SFT's) is refused: `lab.dpo` folds that adapter in first.
    """

    name: ClassVar[str] = "dpo"
    released_attributes: ClassVar[tuple[str, ...]] = ("ref_policy",)  # what release() drops
    mutable_hparams: ClassVar[tuple[str, ...]] = ("beta", "learning_rate", "batch_size")

    def __init__(
        self,
        policy: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        data: Any,
        config: DPOConfig | None = None,
        *,
        ref_policy: PreTrainedModel | None = None,
        clock: StepClock | None = None,
        **overrides: Any,
    ) -> None:
        config = make_config(config, DPOConfig, overrides)
        super().__init__(config, clock=clock)
        self.policy = policy
        self.tokenizer = tokenizer
        self.device = next(policy.parameters()).device
        check_no_foreign_adapter(policy, "dpo")
        self.uses_lora = is_peft_model(policy)
        if ref_policy is not None:
            self.ref_policy: PreTrainedModel | None = freeze(ref_policy)
        elif self.uses_lora:
            self.ref_policy = None  # the policy with its adapter switched off
        else:
            self.ref_policy = freeze(copy.deepcopy(policy))
        self.source = data
        self.epoch = 0  # passes over the pairs started so far (each has its own permutation)
        self.position = 0  # pairs of the current pass already used
        self.refresh()
        trainable = [p for p in policy.parameters() if p.requires_grad]
        self.optimizer = adamw(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
        self._trainable = trainable

    # ------------------------------------------------------------------ data
    def refresh(self) -> int:
        """Re-read the data source (the store's current labels) and start a new pass; returns #pairs."""
        with self._step_lock:
            records = as_pair_records_or_explain(self.source, self.config.soft_targets)
            self._set_pairs(records)
            if self.step_count or self.position:
                self.epoch, self.position = self.epoch + 1, 0
            return len(self.pairs)

    def _set_pairs(self, records: list[PairRecord]) -> None:
        if not records:
            raise ValueError(
                "DPO has no preference pairs to learn from (ties and both-bad labels are left out): "
                "label some pairs first (lab.label(...)), then call refresh()."
            )
        self.pairs = records
        self._tokenized = [self._tokenize(r) for r in records]

    def _tokenize(self, record: PairRecord) -> _Tokenized:
        def ids(text: str) -> list[int]:
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]

        suffix = response_suffix(self.tokenizer)
        target = record.target if self.config.soft_targets else 1.0
        return _Tokenized(
            ids(format_prompt(self.tokenizer, record.prompt)),
            ids(record.chosen + suffix),
            ids(record.rejected + suffix),
            target,
        )

    def _next_batch(self) -> list[_Tokenized]:
        batch = []
        while len(batch) < self.config.batch_size:
            order = self._permutation(self.epoch)
            take = order[self.position : self.position + self.config.batch_size - len(batch)]
            batch.extend(self._tokenized[i] for i in take)
            self.position += len(take)
            if self.position >= len(order):
                self.epoch, self.position = self.epoch + 1, 0
        return batch

    def _permutation(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        return torch.randperm(len(self._tokenized), generator=generator).tolist()

    def _collate(self, batch: list[_Tokenized]) -> dict[str, torch.Tensor]:
        """Rows [chosen_0..chosen_n, rejected_0..rejected_n], right-padded, with a response mask."""
        rows = [_fit(b.prompt, b.chosen, self.config.max_length) for b in batch]
        rows += [_fit(b.prompt, b.rejected, self.config.max_length) for b in batch]
        width = max(len(p) + len(r) for p, r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        response = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (prompt, resp) in enumerate(rows):
            n = len(prompt) + len(resp)
            input_ids[i, :n] = torch.tensor(prompt + resp)
            attention[i, :n] = 1
            response[i, len(prompt) : n] = 1
        out = {"input_ids": input_ids, "attention_mask": attention, "response_mask": response}
        out = {k: v.to(self.device) for k, v in out.items()}
        out["targets"] = torch.tensor([b.target for b in batch], device=self.device)
        return out

    # ------------------------------------------------------------------ the math
    def _reference_logps(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        args = (batch["input_ids"], batch["attention_mask"], batch["response_mask"])
        with torch.no_grad():
            if self.ref_policy is not None:
                return sequence_logps(self.ref_policy, *args, self.config.mixed_precision)
            was_training = self.policy.training
            self.policy.eval()
            try:
                with self.policy.disable_adapter():
                    return sequence_logps(self.policy, *args, self.config.mixed_precision)
            finally:
                self.policy.train(was_training)

    def _loss_and_metrics(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        n = batch["targets"].shape[0]
        ref = self._reference_logps(batch)
        logps = sequence_logps(
            self.policy,
            batch["input_ids"],
            batch["attention_mask"],
            batch["response_mask"],
            cfg.mixed_precision,
        )
        tokens = batch["response_mask"].sum(-1)
        eps = cfg.label_smoothing
        targets = batch["targets"] * (1 - eps) + (1 - batch["targets"]) * eps
        losses = dpo_loss(
            logps[:n],
            logps[n:],
            ref[:n],
            ref[n:],
            beta=cfg.beta,
            loss_type=cfg.loss_type,
            targets=targets,
            chosen_tokens=tokens[:n],
            rejected_tokens=tokens[n:],
        )
        log_ratio = (logps - ref).detach()
        chosen, rejected = cfg.beta * log_ratio[:n], cfg.beta * log_ratio[n:]
        metrics = {
            "rewards/chosen": chosen.mean().item(),
            "rewards/rejected": rejected.mean().item(),
            "rewards/accuracy": (chosen > rejected).float().mean().item(),
            "rewards/margin": (chosen - rejected).mean().item(),
            # Not a true KL: the chosen responses are not samples from the policy. It is the k1
            # log-ratio on them, per sequence, which tracks how far the policy drifts on the data.
            "objective/kl": log_ratio[:n].mean().item(),
        }
        return losses.mean(), metrics

    def _train_step(self) -> dict[str, Any]:
        batch = self._collate(self._next_batch())
        self.policy.train(self.config.dropout)
        loss, metrics = self._loss_and_metrics(batch)
        self.check_finite(loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_gradients(self._trainable, self.config.max_grad_norm)
        self.optimizer.step()
        return {
            "loss/dpo": loss.item(),
            **metrics,
            "objective/beta": self.config.beta,
            "train/learning_rate": self.optimizer.param_groups[0]["lr"],
            "train/grad_norm": grad_norm.item(),
            "train/epoch": self.epoch + self.position / len(self._tokenized),
        }

    def _on_hparams_changed(self, changes: dict[str, Any]) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.learning_rate

    # ------------------------------------------------------------------ notebook helpers
    def evaluate(self, pairs: Any) -> dict[str, float]:
        """Loss, implicit-reward accuracy, margins and chosen log-ratio on `pairs` (no update).

        `pairs` is anything the stage accepts as data (a list of dicts, a DataFrame, a store).
        """
        records = as_pair_records_or_explain(pairs, self.config.soft_targets)
        if not records:
            raise ValueError("evaluate() needs at least one pair")
        items = [self._tokenize(r) for r in records]
        totals: dict[str, float] = {}
        with self._step_lock, torch.no_grad():
            was_training = self.policy.training
            self.policy.eval()
            try:
                for start in range(0, len(items), self.config.batch_size):
                    chunk = items[start : start + self.config.batch_size]
                    loss, metrics = self._loss_and_metrics(self._collate(chunk))
                    for key, value in {"loss/dpo": loss.item(), **metrics}.items():
                        totals[key] = totals.get(key, 0.0) + value * len(chunk)
            finally:
                self.policy.train(was_training)
        return {key: value / len(items) for key, value in totals.items()}

    def sample(self, prompts: list[str], **kwargs: Any) -> list[str]:
        """Responses of the current policy to `prompts` (keyword arguments go to `generate`)."""
        kwargs.setdefault("max_new_tokens", self.config.max_new_tokens)
        with self._step_lock:
            return generate(self.policy, self.tokenizer, list(prompts), **kwargs)

    # ------------------------------------------------------------------ checkpoints
    def _save_state(self, folder: Path) -> None:
        save_model(folder, "policy", self.policy, self.tokenizer)
        if self.ref_policy is not None:
            save_model(folder, "reference", self.ref_policy)
        save_training_state(folder, self.optimizer)
        with open(folder / "pairs.jsonl", "w", encoding="utf-8") as f:
            for record in self.pairs:
                f.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
        store_path = getattr(self.source, "path", None)
        order = {
            "epoch": self.epoch,
            "position": self.position,
            "uses_lora": self.uses_lora,
            "store_path": store_path if store_path and Path(str(store_path)).is_file() else None,
        }
        (folder / "dpo_state.json").write_text(json.dumps(order, indent=2), encoding="utf-8")

    @classmethod
    def _from_checkpoint(
        cls,
        folder: Path,
        meta: dict[str, Any],
        *,
        policy: PreTrainedModel | None = None,
        data: Any = None,
        clock: StepClock | None = None,
        device: str | torch.device | None = None,
        **_: Any,
    ) -> DPOStage:
        """Extra arguments: `policy` (load the weights into this model, e.g. the lab's policy; required
        for LoRA checkpoints, which hold only the adapter), `data` (the store refresh() reads later; by
        default the saved store file if there was one), `clock`, and `device` (default: CUDA if
        available)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from rlhf_lab.device import choose_device

        state = json.loads((folder / "dpo_state.json").read_text(encoding="utf-8"))
        tokenizer = AutoTokenizer.from_pretrained(model_path(folder, "policy"))
        saved = model_path(folder, "policy")
        if state["uses_lora"]:
            if policy is None:
                raise ValueError(
                    "this DPO checkpoint holds a LoRA adapter: load(path, policy=<the PEFT model>)"
                )
            from peft import set_peft_model_state_dict
            from safetensors.torch import load_file

            set_peft_model_state_dict(policy, load_file(saved / "adapter_model.safetensors"))
        elif policy is not None:
            policy.load_state_dict(AutoModelForCausalLM.from_pretrained(saved).state_dict())
        else:
            policy = AutoModelForCausalLM.from_pretrained(saved)
        ref_policy = None
        if model_path(folder, "reference").is_dir():
            ref_policy = AutoModelForCausalLM.from_pretrained(model_path(folder, "reference"))
        target = choose_device(device)
        policy = policy.to(target)
        ref_policy = ref_policy.to(target) if ref_policy is not None else None
        with open(folder / "pairs.jsonl", encoding="utf-8") as f:
            saved_pairs = [json.loads(line) for line in f if line.strip()]
        config = config_from_dict(DPOConfig, meta["config"])
        stage = cls(policy, tokenizer, saved_pairs, config, ref_policy=ref_policy, clock=clock)
        if data is None and state.get("store_path") and Path(state["store_path"]).is_file():
            from rlhf_lab.store import PreferenceStore

            data = PreferenceStore(state["store_path"])
        stage.source = data if data is not None else saved_pairs
        stage.epoch, stage.position = state["epoch"], state["position"]
        load_training_state(folder, stage.optimizer)
        return stage


# ---------------------------------------------------------------------- helpers
def as_pair_records_or_explain(data: Any, soft: bool) -> list[PairRecord]:
    """Pairs from `data`; a store gives its current labels without ties and both-bad votes."""
    try:
        if hasattr(data, "pairs") and callable(data.pairs):
            return as_pair_records(data, ties="exclude", both_bad="exclude", soft=soft)
        return as_pair_records(data)
    except ValueError as exc:
        raise ValueError(f"DPO data: {exc}") from None


def _fit(prompt: list[int], response: list[int], max_length: int) -> tuple[list[int], list[int]]:
    """Cut prompt + response to `max_length`: the response keeps its start (at least half the
    window), the prompt keeps its end (the part next to the response)."""
    if len(prompt) + len(response) <= max_length:
        return prompt, response
    response = response[: max(max_length - len(prompt), max_length // 2)]
    return prompt[len(prompt) - (max_length - len(response)) :], response
