"""Seconds per RL step of the lab's engine on GPT-2 124M / SmolLM2-135M shapes, with random weights.

    python bench/ppo_throughput.py --arch gpt2 --estimator ppo          # on a GPU
    python bench/ppo_throughput.py --smoke                              # tiny sizes on CPU, seconds

Prints ONE JSON line: median seconds per step (after warm-up), generated tokens/s, a breakdown
(generation, scoring, reference/value forwards, updates), peak GPU memory, and the TRL reference
figures this engine is compared against.

Workload (the issue's): PPO = 64 prompts x 32 tokens, 64 new tokens at fixed length (EOS
ignored), 4 epochs x 4 minibatches; RLOO = 16 prompts x 4 samples, same lengths, 4 x 4. Scoring
uses a reward model of the same shape (random scalar head), as TRL's PPO does. The value
function is a head on the policy (our default; TRL's PPO trains a separate value model).
Random weights give the same FLOPs as trained ones; a word-level tokenizer built in code has
exactly the model's vocabulary, so no download is needed.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlhf_lab.device import choose_device, configure_threads  # noqa: E402
from rlhf_lab.rl import ModelReward, RLStage  # noqa: E402

# Seconds per step of TRL 1.12's PPOTrainer / RLOOTrainer on one H100 (from the issue) and our targets.
TRL_REFERENCE_S = {"ppo/gpt2": 2.87, "ppo/smollm2": 8.74, "rloo/gpt2": 1.69}
TARGET_S = {"ppo/gpt2": 0.6, "ppo/smollm2": 1.5, "rloo/gpt2": 0.4}

ARCHS = {
    "gpt2": dict(family="gpt2", vocab=50257, n_layer=12, n_embd=768, n_head=12, positions=1024),
    "smollm2": dict(
        family="llama", vocab=49152, n_layer=30, n_embd=576, n_head=9, kv_heads=3, mlp=1536, positions=2048
    ),
    "tiny": dict(family="gpt2", vocab=1024, n_layer=2, n_embd=64, n_head=4, positions=256),
}


def word_tokenizer(vocab: int):
    """A whitespace word-level tokenizer with exactly `vocab` ids (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "User:", "Assistant:"]
    words = specials + [f"w{i}" for i in range(vocab - len(specials))]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", padding_side="left"
    )


def reward_word_tokenizer(vocab: int):
    """The reward model's word tokenizer: `word_tokenizer` padded on the right, as the reward model reads."""
    tokenizer = word_tokenizer(vocab)
    tokenizer.padding_side = "right"
    return tokenizer


def random_prompts(vocab: int, words: int, n: int = 256) -> list[str]:
    """`n` prompts of `words` random words of the word tokenizer's vocabulary, drawn from `random`."""
    return [" ".join(f"w{random.randrange(vocab - 4)}" for _ in range(words)) for _ in range(n)]


def build_models(arch: dict, tokenizer, device: torch.device):
    """Policy (causal LM) and reward model (same shape, scalar head), random weights, on `device`."""
    if arch["family"] == "gpt2":
        from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

        def config(**extra):
            return GPT2Config(
                vocab_size=arch["vocab"],
                n_positions=arch["positions"],
                n_embd=arch["n_embd"],
                n_layer=arch["n_layer"],
                n_head=arch["n_head"],
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                bos_token_id=tokenizer.eos_token_id,
                **extra,
            )

        lm_cls, rm_cls = GPT2LMHeadModel, GPT2ForSequenceClassification
    else:
        from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

        def config(**extra):
            return LlamaConfig(
                vocab_size=arch["vocab"],
                hidden_size=arch["n_embd"],
                intermediate_size=arch["mlp"],
                num_hidden_layers=arch["n_layer"],
                num_attention_heads=arch["n_head"],
                num_key_value_heads=arch["kv_heads"],
                max_position_embeddings=arch["positions"],
                tie_word_embeddings=True,
                rope_theta=100_000.0,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                bos_token_id=tokenizer.eos_token_id,
                **extra,
            )

        lm_cls, rm_cls = LlamaForCausalLM, LlamaForSequenceClassification
    with torch.device(device):
        policy = lm_cls(config())
        reward_model = rm_cls(config(num_labels=1))
    if device.type == "cuda":
        reward_model = reward_model.to(torch.bfloat16)  # frozen: no fp32 master weights needed
    return policy, reward_model


def device_name(device: torch.device) -> str:
    """The GPU's name on CUDA, else the CPU's (as `platform` reports it), for the JSON line."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"


def workload(estimator: str, smoke: bool) -> dict:
    if smoke:
        base = dict(prompt_words=6, max_new_tokens=8, num_epochs=2, num_minibatches=2)
        return {
            **base,
            **(dict(batch_size=2, samples_per_prompt=2) if estimator == "rloo" else dict(batch_size=4)),
        }
    base = dict(
        prompt_words=30, max_new_tokens=64, num_epochs=4, num_minibatches=4
    )  # 2 + 30 = 32 prompt tokens
    return {
        **base,
        **(dict(batch_size=16, samples_per_prompt=4) if estimator == "rloo" else dict(batch_size=64)),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="gpt2")
    parser.add_argument("--estimator", choices=["ppo", "rloo"], default="ppo")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--smoke", action="store_true", help="tiny model and sizes on CPU (CI)")
    parser.add_argument("--steps", type=int, default=None, help="measured steps (default 5; smoke 2)")
    parser.add_argument(
        "--warmup", type=int, default=None, help="unmeasured steps first (default 2; smoke 1)"
    )
    parser.add_argument(
        "--compile", action="store_true", help="CUDA: static KV cache + torch.compile decoding"
    )
    parser.add_argument(
        "--compile-update",
        nargs="?",
        const="default",
        default=False,
        choices=["default", "reduce-overhead"],
        help="torch.compile the policy's forward in the update; reduce-overhead = also CUDA graphs",
    )
    parser.add_argument("--value", choices=["head", "separate"], default="head")
    args = parser.parse_args(argv)

    if args.smoke:
        args.arch, args.device = "tiny", "cpu"
    device = choose_device(None if args.device == "auto" else args.device)
    threads = configure_threads(device)
    steps = args.steps or (2 if args.smoke else 5)
    warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 2)
    arch, work = ARCHS[args.arch], workload(args.estimator, args.smoke)
    torch.manual_seed(0)
    random.seed(0)

    tokenizer = word_tokenizer(arch["vocab"])
    policy, reward_model = build_models(arch, tokenizer, device)
    reward_tokenizer = reward_word_tokenizer(arch["vocab"])
    prompts = random_prompts(arch["vocab"], work["prompt_words"])
    settings = {k: v for k, v in work.items() if k != "prompt_words"}
    stage = RLStage(
        policy,
        tokenizer,
        prompts,
        ModelReward(reward_model, reward_tokenizer, batch_size=64),
        estimator=args.estimator,
        stop_on_eos=False,
        learning_rate=1e-6,
        value=args.value,
        compile_generation=args.compile,
        compile_update=args.compile_update,
        **settings,
    )

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, phases = [], []
    for i in range(warmup + steps):
        started = time.perf_counter()
        stage.step(progress=False)
        if i >= warmup:
            times.append(time.perf_counter() - started)
            phases.append(dict(stage.last_timings))

    seconds = statistics.median(times)
    rollouts = stage.config.rollouts_per_step
    key = f"{args.estimator}/{args.arch}"
    result = {
        "bench": "ppo_throughput",
        "command": "python bench/ppo_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "arch": args.arch,
        "estimator": args.estimator,
        "device": str(device),
        "device_name": device_name(device),
        "precision": "bf16 autocast" if device.type == "cuda" else "fp32",
        "threads": threads,
        "smoke": args.smoke,
        "rollouts_per_step": rollouts,
        "prompt_tokens": work["prompt_words"] + 2,
        "new_tokens": work["max_new_tokens"],
        "epochs_x_minibatches": [work["num_epochs"], work["num_minibatches"]],
        "value": args.value if args.estimator == "ppo" else None,
        "compile_generation": args.compile,
        "compile_update": args.compile_update,
        "sec_per_step": round(seconds, 4),
        "step_times_s": [round(t, 4) for t in times],
        "generated_tokens_per_s": round(rollouts * work["max_new_tokens"] / seconds, 1),
        "breakdown_s": {k: round(statistics.median(p.get(k, 0.0) for p in phases), 4) for k in phases[0]},
        "peak_gpu_mem_gb": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        if device.type == "cuda"
        else None,
        "trl_reference_h100_s": TRL_REFERENCE_S,
        "target_h100_s": TARGET_S,
        "trl_reference_s": TRL_REFERENCE_S.get(key),
        "target_s": TARGET_S.get(key),
        "torch": torch.__version__,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
