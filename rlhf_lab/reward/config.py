"""`RMConfig`: the hyper-parameters of reward-model training, one docstring per field.

>>> from rlhf_lab.reward import RMConfig
>>> RMConfig(learning_rate=1e-3, loss="ranking").validate()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rlhf_lab.hparams import at_least, check_fields

LOSSES = ("bradley_terry", "ranking")
SCHEDULES = ("constant", "linear")
WARM_START_MAX_EPOCHS = 2
"""An incremental fit makes at most this many passes over the training pairs: 20 steps on 16 new labels
would be 10 passes, which memorises them and undoes what a pre-trained model knew (held-out accuracy vs
gold 0.73 -> 0.53 on MiniLM, bench/README.md)."""
RM_RANGES = {
    "learning_rate": at_least(0),
    "warm_start_learning_rate": at_least(0),
    "batch_size": at_least(1),
    "max_length": at_least(2),
    "weight_decay": at_least(0),
    "warmup_ratio": at_least(0),
    "max_grad_norm": at_least(0),
    "steps": at_least(1),
    "warm_start_steps": at_least(1),
    "epochs": at_least(1),
    "warm_start_epochs": at_least(1),
    "patience": at_least(1),
    "eval_batch_size": at_least(1),
    "calibration_bins": at_least(1),
}
"""Allowed values of RMConfig's numeric fields (checked by `validate()` through rlhf_lab.hparams)."""


@dataclass
class RMConfig:
    """Hyper-parameters of reward-model training.

    `learning_rate` and `batch_size` may be changed between steps with `stage.set(...)`;
    the new values apply from the next step.
    """

    learning_rate: float = 1e-5
    """AdamW learning rate (peak, under `schedule`). Tiny models want ~1e-3, pretrained backbones 1e-5..5e-5."""
    schedule: str = "constant"
    """Learning rate over one fit: "constant", or "linear" (warm up over `warmup_ratio` of the fit's steps,
    then decay linearly to 0, as BERT fine-tuning does: Devlin et al. 2019). The bundled pre-training uses
    "linear" (bench/README.md)."""
    warmup_ratio: float = 0.1
    """Share of a "linear" fit's steps spent warming up."""
    batch_size: int = 8
    """Training units per step: pairs ("bradley_terry") or ranked items ("ranking"). Small batches give
    a lab-sized data set enough optimizer steps."""
    max_length: int = 512
    """Longest scored text in tokens. Causal layouts keep the end (where the score is read)."""
    weight_decay: float = 0.0
    """AdamW weight decay on matrices (a regulariser: reward models over-fit quickly)."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this value (0 disables clipping). Formerly `grad_clip`, still
    accepted as a deprecated keyword."""
    seed: int = 0
    """Seed of the data order (ensembles give each member its own)."""
    split_seed: int = 0
    """Seed of the prompt -> train/val/test assignment (shared by ensemble members)."""
    split: list[float] | None = None
    """(train, val, test) fractions of prompts; None = 0.8/0.1/0.1, or 0.9/0.1/0 below 100 prompts."""
    loss: str = "bradley_terry"
    """"bradley_terry" (pairs independent) or "ranking" (the pairs of one item form one unit)."""
    ties: str = "exclude"
    """Store ties: "exclude" them, or keep them as "soft" half votes (target 0.5)."""
    both_bad: str = "exclude"
    """Store "both bad" verdicts: "exclude" or "soft", as for ties."""
    soft_labels: bool = True
    """Merge several annotators' votes on a pair into target = fraction preferring `chosen`."""
    use_margin: bool = True
    """Subtract each pair's margin (e.g. a Likert difference) from r_c - r_r in the loss."""
    steps: int = 80
    """Optimizer steps of a fit from scratch (the first fit, or `warm_start=False`). Schedules count steps,
    not epochs: 48 pairs x 3 epochs at batch 32 is 6 Adam steps, which leaves a reward model untrained,
    while ~50-100 steps at batch 8 learn from 50-600 pairs (bench/README.md, "reward model")."""
    warm_start_steps: int = 20
    """Optimizer steps of an incremental fit that starts from the current weights (new labels top up a
    trained or pre-trained model), at most WARM_START_MAX_EPOCHS passes over the training pairs."""
    warm_start_learning_rate: float | None = None
    """Learning rate of an incremental fit; None = learning_rate / 10. A fresh AdamW's first steps move every
    weight by about the learning rate whatever the gradient's size: 4 steps at 1e-4 on 12 new pairs took a
    pre-trained MiniLM from 0.73 to 0.52 held-out accuracy vs gold, at 1e-5 it kept 0.72 (bench/README.md)."""
    epochs: int | None = None
    """If set, a fit from scratch makes this many passes over the training pairs instead of `steps`."""
    warm_start_epochs: int | None = None
    """If set, an incremental fit makes this many passes instead of `warm_start_steps`."""
    early_stopping: bool = False
    """Evaluate validation accuracy after each epoch; stop and keep the best weights when it stalls."""
    patience: int = 1
    """Epochs without a better validation accuracy before early stopping."""
    center_rewards: bool = True
    """After each fit, shift rewards so the training responses average 0 (rewards are shift-invariant;
    this makes ensemble members comparable and keeps RL rewards near 0)."""
    eval_batch_size: int = 64
    """Texts per forward pass when scoring without gradients."""
    mixed_precision: str = "no"
    """"bf16" runs the reward model's forwards (training and scoring) under bf16 autocast, fp32 master
    weights; "no" leaves them alone. The smollm2-135m preset asks for bf16 on CPUs with native bf16."""
    calibration_bins: int = 10
    """Bins of the reliability table and ECE."""

    deprecated_names: ClassVar[dict[str, str]] = {"grad_clip": "max_grad_norm"}

    @property
    def warm_lr(self) -> float:
        """The incremental fit's learning rate with its default filled in."""
        return (
            self.warm_start_learning_rate
            if self.warm_start_learning_rate is not None
            else self.learning_rate / 10
        )

    @property
    def grad_clip(self) -> float:
        """Deprecated name of `max_grad_norm` (kept for one release)."""
        return self.max_grad_norm

    def validate(self) -> RMConfig:
        """Raise ValueError for a setting that cannot work (called by the Stage base)."""
        check_fields(self, RM_RANGES)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.warmup_ratio >= 1:
            raise ValueError(f"warmup_ratio must be below 1, got {self.warmup_ratio}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        return self
