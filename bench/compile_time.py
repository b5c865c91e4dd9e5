"""How long torch.compile takes before the update's first step: whole model vs block by block. ONE JSON line.

    python bench/compile_time.py --arch smollm2 --mode blocks     # the SmolLM2-135M shape, regional
    python bench/compile_time.py --arch smollm2 --mode whole      # the whole model (minutes on a CPU)
    python bench/compile_time.py --smoke                          # tiny shape, CPU (CI)

One forward + backward of a batch of random tokens through the policy (random weights, `ppo_throughput.py`'s
shapes, bf16 autocast; `use_cache=False`, as in the update), timed call by call: the first call pays the
compilation (inductor's caches are off, so every run compiles cold, as on a freshly started machine),
the later ones (other sequence lengths: shapes are dynamic) show the step time after it.
Modes: `eager` (no compile), `whole` (`torch.compile(policy, dynamic=True)`, what compile_update did
first), `blocks` (`rlhf_lab.rl.compiled.RegionalCompile`, what compile_update=True does now).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ppo_throughput import ARCHS, build_models, device_name, word_tokenizer  # noqa: E402

from rlhf_lab.device import choose_device, configure_threads  # noqa: E402
from rlhf_lab.rl.compiled import RegionalCompile  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="smollm2")
    parser.add_argument("--mode", choices=["eager", "whole", "blocks"], default="blocks")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    parser.add_argument("--rows", type=int, default=4, help="sequences per batch (default 4)")
    parser.add_argument("--calls", type=int, default=3, help="forward + backward calls (default 3)")
    parser.add_argument("--smoke", action="store_true", help="tiny shape on the CPU (CI)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.arch, args.device = "tiny", "cpu"
    device = choose_device(None if args.device == "auto" else args.device)
    threads = configure_threads(device)
    # Cold, as on a freshly started machine: no compiled graphs or kernels reused from an earlier run.
    torch._inductor.config.force_disable_caches = True
    torch.manual_seed(0)
    arch = ARCHS[args.arch]
    policy, _ = build_models(arch, word_tokenizer(arch["vocab"]), device)
    model, blocks = policy, None
    if args.mode == "whole":
        model = torch.compile(policy, dynamic=True)
    elif args.mode == "blocks":
        blocks = RegionalCompile(policy)

    seconds = []
    for call in range(args.calls):
        ids = torch.randint(0, arch["vocab"], (args.rows, 48 + 8 * call), device=device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        with blocks.active() if blocks else contextlib.nullcontext():
            with torch.autocast(device.type, dtype=torch.bfloat16):
                out = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)
            out.logits.float().mean().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(round(time.perf_counter() - started, 3))
        policy.zero_grad(set_to_none=True)

    result = {
        "bench": "compile_time",
        "command": "python bench/compile_time.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "arch": args.arch,
        "mode": args.mode,
        "device": str(device),
        "device_name": device_name(device),
        "threads": threads,
        "rows": args.rows,
        "call_lengths": [48 + 8 * call for call in range(args.calls)],
        "first_call_s": seconds[0],
        "later_calls_s": seconds[1:],
        "torch": torch.__version__,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
