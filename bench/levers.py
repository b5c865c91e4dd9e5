"""Where an RL step's time goes, lever by lever: each speed-up measured side by side with its baseline.

    python bench/levers.py --arch smollm2                # CPU: batch 8, 32 new tokens
    python bench/levers.py --arch gpt2 --device cuda     # GPU: the issue's batch 64, 64 new tokens
    python bench/levers.py --smoke                       # tiny model, seconds (CI)

Prints ONE JSON line. Every lever is a pair of timings taken in the same process, alternating
baseline and fast variant (median of `--repeats`), and their ratio `speedup` = baseline / fast:

- `adamw`: one optimizer step over the policy's parameters, foreach (PyTorch's default) vs fused
  (what `rlhf_lab.optim.adamw` picks on CUDA and CPU);
- `generation`: HF `generate` with the dynamic KV cache vs a static cache (on CUDA transformers
  then compiles the decoding step with CUDA graphs; on the CPU nothing is compiled);
- `logprobs`: token log-probs of a (batch, new tokens, vocab) logits tensor by a full float32
  `log_softmax` + gather vs `rlhf_lab.rl.logprobs.token_logprobs` (logsumexp, chunked rows), with
  the float32 bytes the full version materialises and, on CUDA, each one's peak memory;
- `value`: one update minibatch (forward + backward) with a value head on the policy's last hidden
  state vs a separate value model of the same shape (TRL's PPO design: a second backbone);
- `precision`: forward + backward in fp32 vs under bf16 autocast (fp32 master weights).

Random weights (same FLOPs as trained ones), the shapes of bench/ppo_throughput.py.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ppo_throughput import ARCHS, build_models, word_tokenizer  # noqa: E402

from rlhf_lab.device import autocast_for, choose_device, configure_threads  # noqa: E402
from rlhf_lab.rl.logprobs import token_logprobs  # noqa: E402
from rlhf_lab.rl.rollout import Rollout, position_ids_from_mask, response_forward, sample_responses  # noqa: E402
from rlhf_lab.rl.value import SeparateValueModel, ValueHead, hidden_size  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def side_by_side(
    baseline: Callable[[], object], fast: Callable[[], object], device: torch.device, repeats: int
) -> dict:
    """Median seconds of each, alternating so that machine load hits both alike; one warm-up call each."""
    times: dict[str, list[float]] = {"baseline": [], "fast": []}
    for fn in (baseline, fast):
        fn()
        _sync(device)
    for _ in range(repeats):
        for name, fn in (("baseline", baseline), ("fast", fast)):
            started = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - started)
    base, quick = statistics.median(times["baseline"]), statistics.median(times["fast"])
    return {
        "baseline_s": float(f"{base:.4g}"),
        "fast_s": float(f"{quick:.4g}"),
        "speedup": round(base / quick, 2),
    }


def lever_adamw(policy: torch.nn.Module, device: torch.device, repeats: int) -> dict:
    params = [p for p in policy.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    optimizers = {
        kind: torch.optim.AdamW(params, lr=1e-7, eps=1e-5, **{kind: True}) for kind in ("foreach", "fused")
    }
    row = side_by_side(optimizers["foreach"].step, optimizers["fused"].step, device, repeats)
    for p in params:
        p.grad = None
    return {
        "what": "one AdamW step over the policy's parameters",
        "baseline": "foreach",
        "fast": "fused",
        **row,
    }


def lever_generation(
    policy: torch.nn.Module, prompt_ids: torch.Tensor, new_tokens: int, device: torch.device, repeats: int
) -> dict:
    mask = torch.ones_like(prompt_ids)

    def generate(static: bool):
        with autocast_for(device):
            return sample_responses(
                policy,
                prompt_ids,
                mask,
                pad_token_id=0,
                eos_token_id=1,
                max_new_tokens=new_tokens,
                stop_on_eos=False,
                static_cache=static,
            )

    row = side_by_side(lambda: generate(False), lambda: generate(True), device, repeats)
    fast = "static KV cache + torch.compile (CUDA graphs)" if device.type == "cuda" else "static KV cache"
    return {"what": "HF generate, fixed length", "baseline": "dynamic KV cache", "fast": fast, **row}


def lever_logprobs(batch: Rollout, vocab: int, device: torch.device, repeats: int) -> dict:
    n, r = batch.response_ids.shape
    generator = torch.Generator(device=device).manual_seed(0)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    logits = torch.randn(n, r, vocab, device=device, generator=generator).to(dtype)
    tokens = batch.response_ids

    def full():
        return torch.log_softmax(logits.float() / 0.7, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)

    def chunked():
        return token_logprobs(logits, tokens, 0.7)[0]

    assert torch.allclose(full(), chunked(), atol=1e-4), "the two log-prob paths disagree"
    row = side_by_side(full, chunked, device, repeats)
    peaks = {}
    if device.type == "cuda":
        for name, fn in (("baseline", full), ("fast", chunked)):
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            fn()
            peaks[f"{name}_peak_extra_gb"] = round(
                (torch.cuda.max_memory_allocated(device) - base) / 2**30, 3
            )
    return {
        "what": f"log-probs of {n}x{r} sampled tokens from bf16/fp32 logits, temperature 0.7",
        "baseline": "float32 log_softmax + gather",
        "fast": "token_logprobs (logsumexp, 8-row chunks)",
        "full_float32_copy_gb": round(n * r * vocab * 4 / 2**30, 3),
        **peaks,
        **row,
    }


def lever_value(policy: torch.nn.Module, batch: Rollout, device: torch.device, repeats: int) -> dict:
    import copy

    head = ValueHead(hidden_size(policy)).to(device)
    separate = SeparateValueModel(copy.deepcopy(policy)).to(device)
    attention = batch.attention_mask
    positions = position_ids_from_mask(attention)

    def with_head():
        with autocast_for(device):
            logits, hidden = response_forward(policy, batch, with_hidden=True)
            values = head(hidden)
        (logits.float().mean() + values.float().mean()).backward()

    def with_model():
        with autocast_for(device):
            logits, _ = response_forward(policy, batch)
            values = separate(batch.input_ids, attention, positions, batch.response_length)
        (logits.float().mean() + values.float().mean()).backward()

    row = side_by_side(with_model, with_head, device, repeats)
    policy.zero_grad(set_to_none=True)
    return {
        "what": "one update minibatch, forward + backward, policy and value",
        "baseline": "separate value model (a second backbone)",
        "fast": "value head on the policy's hidden state",
        **row,
    }


def lever_precision(policy: torch.nn.Module, batch: Rollout, device: torch.device, repeats: int) -> dict:
    def step(mode: str):
        with autocast_for(device, mode):
            logits, _ = response_forward(policy, batch)
        logits.float().mean().backward()

    row = side_by_side(lambda: step("no"), lambda: step("bf16"), device, repeats)
    policy.zero_grad(set_to_none=True)
    return {"what": "policy forward + backward", "baseline": "fp32", "fast": "bf16 autocast", **row}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="gpt2")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--batch", type=int, default=None, help="rollouts (default: CUDA 64, CPU 8)")
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=None, help="default: CUDA 64, CPU 32")
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed calls per variant (default 5; smoke 2)"
    )
    parser.add_argument("--levers", nargs="*", default=None, help="subset of: " + " ".join(LEVERS))
    parser.add_argument("--smoke", action="store_true", help="tiny model and sizes on CPU (CI)")
    args = parser.parse_args(argv)

    if args.smoke:
        args.arch, args.device, args.batch, args.prompt_tokens, args.new_tokens = "tiny", "cpu", 4, 8, 8
    device = choose_device(None if args.device == "auto" else args.device)
    threads = configure_threads(device)
    on_gpu = device.type == "cuda"
    batch_size = args.batch or (64 if on_gpu else 8)
    new_tokens = args.new_tokens or (64 if on_gpu else 32)
    repeats = args.repeats or (2 if args.smoke else 5)
    arch = ARCHS[args.arch]
    torch.manual_seed(0)

    policy, reward_model = build_models(arch, word_tokenizer(arch["vocab"]), device)
    del reward_model
    prompt_ids = torch.randint(4, arch["vocab"], (batch_size, args.prompt_tokens), device=device)
    policy.eval()  # no dropout: the variants must compute the same thing
    rollout = sample_responses(
        policy,
        prompt_ids,
        torch.ones_like(prompt_ids),
        pad_token_id=0,
        eos_token_id=1,
        max_new_tokens=new_tokens,
        stop_on_eos=False,
    )

    run = {
        "adamw": lambda: lever_adamw(policy, device, repeats),
        "generation": lambda: lever_generation(policy, prompt_ids, new_tokens, device, repeats),
        "logprobs": lambda: lever_logprobs(rollout, arch["vocab"], device, repeats),
        "value": lambda: lever_value(policy, rollout, device, repeats),
        "precision": lambda: lever_precision(policy, rollout, device, repeats),
    }
    levers = {name: run[name]() for name in (args.levers or LEVERS)}
    result = {
        "bench": "levers",
        "arch": args.arch,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if on_gpu else "cpu",
        "threads": threads,
        "smoke": args.smoke,
        "batch": batch_size,
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": new_tokens,
        "repeats": repeats,
        "levers": levers,
        "torch": torch.__version__,
    }
    print(json.dumps(result))
    return result


LEVERS = ("adamw", "generation", "logprobs", "value", "precision")

if __name__ == "__main__":
    main()
