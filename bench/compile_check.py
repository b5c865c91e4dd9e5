"""Does the compiled update take the same step as the eager one on this device? Prints ONE JSON line.

    python bench/compile_check.py              # on a GPU: eager vs compile_update=True vs "reduce-overhead"
    python bench/compile_check.py --smoke      # on the CPU (CUDA graphs do not exist there: checks the path)

Three PPO stages start from the same random weights (a small GPT-2-shaped model, `ppo_throughput.py`'s
"tiny" shape) and take `--steps` steps with the same samples: eager, `compile_update=True` (inductor's
fused kernels) and `compile_update="reduce-overhead"` (the same, replayed as CUDA graphs). Precision is
fp32 so that only the compiler's reordered arithmetic separates them. For each compiled mode the line
gives the largest difference of any weight from the eager run, relative to the largest move the eager
run made, and the first minibatch's mean ratio (1 when the update starts from the sampling weights). A
correct compiled update gives a relative difference of about 1e-4 or less; a wrong gradient (the CUDA
graph trees hazard of pytorch/pytorch#169545, gradients overwritten between replays) gives one near 1.
`bench/ppo_throughput.py --compile-update MODE` times the modes; this script says whether to trust them.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ppo_throughput import (  # noqa: E402
    ARCHS,
    build_models,
    device_name,
    random_prompts,
    reward_word_tokenizer,
    word_tokenizer,
)

from rlhf_lab.device import choose_device  # noqa: E402
from rlhf_lab.rl import ModelReward, RLStage  # noqa: E402

MODES = (False, True, "reduce-overhead")
AGREES_BELOW = 1e-2
"""Relative weight difference under which a compiled run counts as taking the eager step."""


def run_mode(mode: bool | str, device: torch.device, steps: int, smoke: bool) -> dict:
    """`steps` PPO steps from seed 0 with compile_update=`mode`: the final weights and the first ratio."""
    arch = ARCHS["tiny"]
    torch.manual_seed(0)
    random.seed(0)
    tokenizer = word_tokenizer(arch["vocab"])
    policy, reward_model = build_models(arch, tokenizer, device)
    reward_model = reward_model.float()
    prompts = random_prompts(arch["vocab"], words=8, n=64)
    initial = {name: p.detach().clone() for name, p in policy.named_parameters()}
    stage = RLStage(
        policy,
        tokenizer,
        prompts,
        ModelReward(reward_model, reward_word_tokenizer(arch["vocab"]), batch_size=64),
        estimator="ppo",
        stop_on_eos=False,
        learning_rate=1e-4,
        mixed_precision="no",
        compile_update=mode,
        batch_size=4 if smoke else 16,
        max_new_tokens=8 if smoke else 16,
        num_epochs=2,
        num_minibatches=2 if smoke else 4,
    )
    started = time.perf_counter()
    first_ratio = None
    for _ in range(steps):
        torch.manual_seed(1)  # the same samples in every mode
        stage.step(progress=False)
        if first_ratio is None:
            first_ratio = stage.last_minibatch_stats[0]["policy/ratio"]
    return {
        "weights": {name: p.detach().float().cpu() for name, p in stage.policy.named_parameters()},
        "initial": {name: p.float().cpu() for name, p in initial.items()},
        "first_ratio": first_ratio,
        "seconds": time.perf_counter() - started,
        "cuda_graphs": stage.uses_cuda_graphs,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    parser.add_argument("--steps", type=int, default=2, help="PPO steps per mode (default 2)")
    parser.add_argument("--smoke", action="store_true", help="CPU, smaller batch (CI)")
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=["default", "reduce-overhead"],
        default=["default", "reduce-overhead"],
        help="compiled modes to check against eager (default: both)",
    )
    args = parser.parse_args(argv)
    device = choose_device("cpu" if args.smoke else (None if args.device == "auto" else args.device))

    wanted = [False] + [True if name == "default" else name for name in args.modes]
    runs = {}
    for mode in [m for m in MODES if m in wanted]:
        try:
            runs[mode] = run_mode(mode, device, args.steps, args.smoke)
        except Exception as exc:  # a mode that fails is a finding, not the end of the check
            runs[mode] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
    eager = runs[False]
    if "error" in eager:
        raise SystemExit(f"compile_check: the eager run failed: {eager['error']}")
    moved = max((eager["weights"][n] - eager["initial"][n]).abs().max().item() for n in eager["weights"])
    modes = {}
    for mode in [m for m in MODES[1:] if m in runs]:
        run, key = runs[mode], "default" if mode is True else mode
        if "error" in run:
            modes[key] = {"error": run["error"]}
            continue
        diff = max((run["weights"][n] - eager["weights"][n]).abs().max().item() for n in eager["weights"])
        modes[key] = {
            "max_weight_diff_vs_eager": diff,
            "relative_to_eager_move": round(diff / moved, 6),
            "agrees_with_eager": diff / moved < AGREES_BELOW,
            "first_minibatch_ratio": round(run["first_ratio"], 6),
            "cuda_graphs": run["cuda_graphs"],
            "seconds": round(run["seconds"], 2),
        }
    result = {
        "bench": "compile_check",
        "command": "python bench/compile_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": str(device),
        "device_name": device_name(device),
        "steps": args.steps,
        "eager": {
            "largest_weight_move": moved,
            "first_minibatch_ratio": round(eager["first_ratio"], 6),
            "seconds": round(eager["seconds"], 2),
        },
        "modes": modes,
        "agrees_below": AGREES_BELOW,
        "torch": torch.__version__,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
