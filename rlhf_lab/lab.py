"""`Lab`: one policy, its tokenizer, a preference store and the stages that train them.

    >>> from rlhf_lab import Lab
    >>> lab = Lab.from_preset("tiny")                 # or "smollm2-135m", or Lab.from_pretrained(hub_id)
    >>> sft = lab.sft(demos);  sft.step(20)
    >>> rm = lab.reward_model();  rm.fit()            # Bradley-Terry on what the store holds
    >>> ppo = lab.ppo(prompts, reward=rm, beta=0.1);  ppo.run(steps=100)

The lab's policy is the model every stage trains in place: SFT improves it, PPO/DPO continue
from it, and `snapshot()` keeps a frozen copy for before/after comparisons. All stages of one
lab share a step clock, so their curves read as one story on a common `lab_step` axis.
"""

from __future__ import annotations

import copy
import os
import random
import warnings
import weakref
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf_lab.device import choose_device, choose_dtype, configure_threads, cpu_has_native_bf16
from rlhf_lab.errors import StageBusyError
from rlhf_lab.generation import Prompt, generate, is_single_prompt
from rlhf_lab.lora import fold_adapter_layers, has_adapter_layers, is_peft_model
from rlhf_lab.models.helpers import freeze
from rlhf_lab.models.presets import Preset, get_preset, load_policy, load_reward_backbone
from rlhf_lab.notices import LabNotice
from rlhf_lab.preset_settings import defaults_on_device, stage_defaults
from rlhf_lab.stages.base import StepClock

__all__ = ["DEFAULT_STORE", "Lab", "freeze"]

DEFAULT_STORE = "rlhf_lab_labels.sqlite"


_STARTS_FROM_IT = (
    "so it starts from the adapted model, takes it as its reference and trains all weights "
    "(with lora=True: a fresh adapter)."
)


class Lab:
    """Holds the policy being aligned and hands out stages wired to it."""

    def __init__(
        self,
        policy: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        reward_spec: str,
        preset: Preset | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        seed: int = 0,
        store: Any = None,
        threads: int | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        self.device = choose_device(device)
        self.dtype = choose_dtype(self.device, dtype)
        self.threads = configure_threads(self.device, threads)
        self.seed = seed
        # Dropout and sampling draw from the global generators: seed them so a notebook re-run
        # reproduces its numbers.
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed)
        self.preset = preset
        # Every stage under bf16 autocast on a CPU that multiplies bf16 natively, for presets big enough to gain
        # (SmolLM2-135M: about 2x per PPO step); fp32 master weights either way. On CUDA "auto" is bf16.
        on_cpu = self.device.type == "cpu"
        self.defaults: dict[str, Any] = (
            defaults_on_device(
                preset.defaults, on_cpu=on_cpu, cpu_bf16_native=on_cpu and cpu_has_native_bf16()
            )
            if preset
            else {}
        )
        self.reward_spec = reward_spec
        self.trust_remote_code = trust_remote_code
        self.tokenizer = tokenizer
        self.policy = policy.to(self.device)
        self.clock = StepClock()
        self.snapshots: dict[str, PreTrainedModel] = {}
        self._store = store
        self._lora_stages: weakref.WeakSet = weakref.WeakSet()  # stages whose adapter sits in the policy
        self._latest_rl: weakref.ref | None = None  # the RL stage `label()` samples second answers like

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_preset(cls, name: str, **kwargs: Any) -> Lab:
        """A lab on a named preset (see rlhf_lab.models.presets.PRESETS); works offline."""
        preset = get_preset(name)
        seed = kwargs.get("seed", 0)
        policy, tokenizer = load_policy(preset.policy, seed=seed)
        return cls(policy, tokenizer, reward_spec=preset.reward, preset=preset, **kwargs)

    @classmethod
    def from_pretrained(
        cls, policy: str, reward_model: str | None = None, *, trust_remote_code: bool = False, **kwargs: Any
    ) -> Lab:
        """A lab on any HF model id or local folder (hub ids need network access).

        The reward model defaults to the policy's own family with a scalar head.
        """
        model, tokenizer = load_policy(
            policy, seed=kwargs.get("seed", 0), trust_remote_code=trust_remote_code
        )
        return cls(
            model,
            tokenizer,
            reward_spec=reward_model or policy,
            trust_remote_code=trust_remote_code,
            **kwargs,
        )

    # ------------------------------------------------------------------ shared pieces
    @property
    def store(self):
        """The preference store: the one given, else $RLHF_LAB_STORE (workshop mode), else
        ./rlhf_lab_labels.sqlite."""
        from rlhf_lab.store import PreferenceStore

        if self._store is None or isinstance(self._store, (str, os.PathLike)):
            path = self._store or os.environ.get("RLHF_LAB_STORE") or DEFAULT_STORE
            self._store = PreferenceStore(Path(path))
        return self._store

    @property
    def has_store(self) -> bool:
        """Whether this lab was given a preference store or has opened one; reading `store` opens (and may
        create) the default one, so code that only wants to know asks this."""
        return self._store is not None

    def new_reward_backbone(self, seed: int | None = None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        """A fresh reward model (scalar head) of this lab's reward family, on the lab's device."""
        model, tokenizer = load_reward_backbone(
            self.reward_spec,
            policy_tokenizer=self.tokenizer,
            seed=self.seed if seed is None else seed,
            trust_remote_code=self.trust_remote_code,
        )
        return model.to(self.device), tokenizer

    def snapshot(self, name: str = "sft") -> PreTrainedModel:
        """Keep a frozen copy of the current policy under `name` (e.g. before RL)."""
        if not isinstance(name, str) or not name.strip():
            raise TypeError(f"A snapshot's name must be non-empty text, like 'sft', got {name!r}.")
        kept = copy.deepcopy(self.policy)
        fold_adapter_layers(kept)  # a LoRA SFT's adapter, folded in: a snapshot is always one plain model
        self.snapshots[name] = freeze(kept)
        return self.snapshots[name]

    def restore(self, name: str = "sft") -> PreTrainedModel:
        """Put the weights of snapshot `name` back into the policy (e.g. between runs of a sweep).

        The policy object stays the same, so stages holding it see the restored weights.
        """
        if name not in self.snapshots:
            raise KeyError(
                f"No snapshot {name!r}; snapshots: {sorted(self.snapshots)}. Call lab.snapshot() first."
            )
        self._fold_adapter(f"restoring {name!r}", then="whose weights then replace them.")
        self.policy.load_state_dict(self.snapshots[name].state_dict())
        return self.policy

    def _fold_adapter(self, before: str, then: str = _STARTS_FROM_IT) -> None:
        """Fold an earlier stage's LoRA adapter into the policy before `before` (a new stage, a restore).

        The adapter's layers sit inside the policy, so a stage started on it would otherwise train
        only that adapter (peft froze every other weight), and a LoRA stage's "adapter off"
        reference would be the model from before that adapter. Folded, the new stage starts from the
        adapted model, keeps it as its reference, and trains what it was asked to: all weights, or
        with lora=True a fresh adapter. TRL's recipes merge between stages too (`merge_and_unload`).
        """
        if not has_adapter_layers(self.policy):
            return
        holders = [s for s in self._lora_stages if _adapter_of(s) is not None]
        holders = [s for s in holders if _adapter_of(s).get_base_model() is self.policy]
        for stage in holders:
            if stage.run_in_flight:
                raise StageBusyError(
                    f"{stage.name} is still running with its LoRA adapter in the policy: stop() it before {before}."
                )
        for stage in holders:
            if hasattr(stage, "merge"):
                stage.merge()  # SFT goes on, training all weights
            else:
                stage.release()  # RL: its adapter is gone, so it keeps only its history and samples
        names = " and ".join(sorted({stage.name for stage in holders})) or "an earlier stage"
        released = sorted({stage.name for stage in holders if stage.released})
        fold_adapter_layers(self.policy)
        warnings.warn(
            f"the policy carries the LoRA adapter of {names}; it is folded into the weights before {before}, "
            + then
            + (f" {' and '.join(released)} is finished: its history and samples stay." if released else ""),
            LabNotice,
            stacklevel=3,
        )

    def _snapshot_like_policy(self, config: dict[str, Any]) -> PreTrainedModel | None:
        """A snapshot whose weights equal the policy's now, to be a new stage's frozen reference.

        Saves a copy of the model per RL or DPO stage started from a snapshot's weights (lab 04
        starts four PPO runs from "sft"): the reference is a frozen copy of exactly those weights.
        None (the stage makes its own copy) when no snapshot matches or the stage uses LoRA.
        """
        if config.get("lora") or not self.snapshots:
            return None
        policy = self.policy.state_dict()
        for snapshot in reversed(list(self.snapshots.values())):  # the newest first: most likely
            frozen = snapshot.state_dict()
            if frozen.keys() == policy.keys() and all(
                frozen[k].dtype == policy[k].dtype and torch.equal(frozen[k], policy[k]) for k in policy
            ):
                return snapshot
        return None

    @overload
    def generate(self, prompts: Prompt, *, model: PreTrainedModel | None = ..., **kwargs: Any) -> str: ...
    @overload
    def generate(
        self, prompts: list[Prompt], *, model: PreTrainedModel | None = ..., **kwargs: Any
    ) -> list[str]: ...
    def generate(self, prompts: Any, *, model: PreTrainedModel | None = None, **kwargs: Any) -> Any:
        """Sample responses from the policy (or `model`, e.g. a snapshot): a list of prompts gives a
        list of responses, one prompt (a string, or a conversation as a list of chat messages) one.

            >>> lab.generate("Write a positive review of a heist film.", seed=0)   # -> str
            >>> lab.generate(test_prompts, seed=0, max_new_tokens=64)              # -> list[str]
        """
        kwargs.setdefault("max_new_tokens", self.defaults.get("max_new_tokens", 32))
        if is_single_prompt(prompts):
            return generate(model or self.policy, self.tokenizer, [prompts], **kwargs)[0]
        return generate(model or self.policy, self.tokenizer, prompts, **kwargs)

    def preset_settings(
        self, section: str, estimator: str = "ppo", samples_per_prompt: int | None = None
    ) -> dict[str, Any]:
        """The config fields this lab fills in from its preset for a stage of `section` ("sft",
        "reward_model", "dpo" or "rl") when the caller leaves them out.

            >>> Lab.from_preset("tiny").preset_settings("sft")       # {'learning_rate': 0.003, ...}
        """
        return stage_defaults(self.defaults, section, estimator, samples_per_prompt)

    # ------------------------------------------------------------------ stages
    def sft(self, demos: Any, **config: Any):
        """Supervised fine-tuning of the policy on (prompt, response) demonstrations."""
        from rlhf_lab.stages.sft import SFTStage

        config = {**self.preset_settings("sft"), **config}
        self._fold_adapter("this SFT stage")
        stage = SFTStage(self.policy, self.tokenizer, demos, clock=self.clock, **config)
        if stage.is_lora:
            self._lora_stages.add(stage)
        return stage

    def reward_model(
        self, data: Any = None, *, seed: int | None = None, pretrained: str | None = None, **config: Any
    ):
        """A reward-model stage on `data` (pairs) or, by default, the lab's preference store.

        `pretrained="positive_review"` (a bundled task) starts from a reward model trained on that
        task's 1,800 bundled rated pairs (cached after the first time), so a room's few labels fine-tune
        it instead of having to teach a model from nothing (rlhf_lab.reward.pretrained).
        """
        from rlhf_lab.reward.stage import RewardModelStage

        config = {**self.preset_settings("reward_model"), **config}
        source = self.store if data is None else data
        if pretrained is not None:
            from rlhf_lab.reward.pretrained import pretrain_on_bundled

            seed = self.seed if seed is None else seed
            return pretrain_on_bundled(
                RewardModelStage,
                self.new_reward_backbone,
                pretrained,
                source,
                spec=self.reward_spec,
                seed=seed,
                clock=self.clock,
                **config,
            )
        model, tokenizer = self.new_reward_backbone(seed)
        return RewardModelStage(model, tokenizer, source, clock=self.clock, **config)

    def reward_ensemble(
        self, n: int = 3, data: Any = None, *, k: float = 1.0, reduce: str = "mean", **config: Any
    ):
        """`n` reward models (seeds 0..n-1) on one split: mean, std and mean - k * std rewards.

        `reduce="conservative"` makes the ensemble's reward mean - k * std (harder to game).
        """
        from rlhf_lab.reward.stage import RewardModelStage

        config = {**self.preset_settings("reward_model"), **config}
        source = self.store if data is None else data
        ensemble = RewardModelStage.ensemble(
            n, self.new_reward_backbone, source, clock=self.clock, k=k, **config
        )
        ensemble.reduce = reduce
        return ensemble

    def ppo(self, prompts: list[str], reward: Any, **config: Any):
        """PPO on the policy against `reward`, with a frozen copy of the current policy as reference."""
        return self.rl(prompts, reward, estimator="ppo", **config)

    def rl(self, prompts: list[str], reward: Any, estimator: str = "ppo", **config: Any):
        """An RL stage with any estimator: "ppo", "rloo", "grpo" or "reinforce"."""
        from rlhf_lab.rl import RLStage

        config = {**self.preset_settings("rl", estimator, config.get("samples_per_prompt")), **config}
        self._fold_adapter(f"this {estimator.upper()} stage")
        config.setdefault("ref_policy", self._snapshot_like_policy(config))
        stage = RLStage(
            self.policy, self.tokenizer, prompts, reward, estimator=estimator, clock=self.clock, **config
        )
        if stage.uses_lora:
            self._lora_stages.add(stage)
        self._latest_rl = weakref.ref(stage)
        return stage

    def dpo(self, data: Any = None, **config: Any):
        """DPO (or IPO) on `data` or the lab's preference store, reference = a frozen copy of the policy."""
        from rlhf_lab.stages.dpo import DPOStage

        config = {**self.preset_settings("dpo"), **config}
        self._fold_adapter(
            "this DPO stage",
            then="so it starts from the adapted model, takes it as its reference and trains all weights.",
        )
        config.setdefault("ref_policy", self._snapshot_like_policy(config))
        return DPOStage(
            self.policy, self.tokenizer, self.store if data is None else data, clock=self.clock, **config
        )

    def save_recipe(self, folder: str | os.PathLike, **stages: Any):
        """This notebook's stages as a config for `rlhf-lab train`, with the data they used (rlhf_lab.recipe).

        >>> recipe = lab.save_recipe("runs/mine", sft=sft, rl=ppo, task="positive_review", evaluate=4)
        >>> print(recipe)          # the files, and the command that trains it without a notebook
        """
        from rlhf_lab.recipe import save_recipe

        return save_recipe(self, folder, **stages)

    def label(self, items: Any = None, *, annotator: str | None = None, **kwargs: Any):
        """The inline pair labeller writing into this lab's store (annotator: $RLHF_LAB_ANNOTATOR, else "me").

        RL samples pair up by prompt; a prompt with one answer gets a second from the policy as it
        is when they are added (during a run: after the current step), sampled with the settings of
        the lab's latest RL stage, so both answers have the same length limit and temperature:

            >>> ppo.pause(); labeller.add(ppo.samples(8)); rm.fit(); ppo.resume()   # the flywheel
        """
        from rlhf_lab.ui.labeller import PairLabeller

        kwargs.setdefault("generate", self._more_answers)
        return PairLabeller(self.store, items, annotator=annotator, **kwargs)

    def _more_answers(self, prompt: str, n: int) -> list[str]:
        from rlhf_lab.active import policy_generator

        stage = self._latest_rl() if self._latest_rl is not None else None
        like_the_stage = policy_generator(stage) if stage is not None else None
        if like_the_stage is not None:
            return like_the_stage(prompt, n)
        return self.generate([prompt] * n)

    def playground(
        self,
        models: dict[str, PreTrainedModel] | None = None,
        *,
        reward: Any = None,
        gold: Any = None,
        **kwargs: Any,
    ):
        """Type a prompt and compare answers: every snapshot beside the current policy by default,
        scored by `reward` (e.g. a reward-model stage) and `gold` (a judge) where given.

            >>> lab.playground(reward=rm, gold=get_judge("positive_review"))
        """
        from rlhf_lab.ui.playground import Playground

        if models is None:
            models = {**self.snapshots, "current policy": self.policy}
        kwargs.setdefault("max_new_tokens", self.defaults.get("max_new_tokens", 32))
        return Playground(models, self.tokenizer, reward=reward, gold=gold, **kwargs)

    def facilitator(self, refresh_s: float = 5.0):
        """The workshop facilitator's view of this lab's (shared) store, with a one-click retrain."""
        from rlhf_lab.ui.facilitator import FacilitatorView

        return FacilitatorView(
            self.store, retrain=lambda: self.reward_model().fit(progress=False), refresh_s=refresh_s
        )

    def __repr__(self) -> str:
        name = self.preset.name if self.preset else type(self.policy).__name__
        return f"<Lab {name} on {self.device} ({self.dtype}), lab_step={self.clock.value}>"


def _adapter_of(stage: Any) -> Any:
    """The peft model holding `stage`'s adapter (SFT keeps it in `model`, RL in `policy`), or None."""
    model = getattr(stage, "model", None) if hasattr(stage, "merge") else stage.policy
    return model if is_peft_model(model) else None
