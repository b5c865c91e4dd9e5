"""Peak memory and time of PPO steps with and without gradient accumulation, side by side.

    python bench/update_memory.py                  # smollm2-135m, lab 04's sizes (about 5 min on 2 cores)
    python bench/update_memory.py --smoke          # tiny, seconds (CI)

Prints ONE JSON line. Each `gradient_accumulation_steps` value runs in a fresh child process (a
process's peak RSS never goes down): the preset's policy, 16 rollouts of up to 64 new tokens (lab
04's settings), a length reward (no reward model: the update's memory does not depend on it), one
warm-up step and `--steps` measured steps. The update is the same for every value (same gradient:
rlhf_lab.rl.update); what changes is the activations held at once, hence the peak, and the time.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_one(preset: str, accumulation: int, steps: int, max_new: int) -> dict:
    import torch

    sys.path.insert(0, str(REPO))
    from rlhf_lab import Lab
    from rlhf_lab.bundled import load_prompts

    torch.manual_seed(0)
    lab = Lab.from_preset(preset, store=":memory:", seed=0)
    prompts = [row["prompt"] for row in load_prompts("helpful_harmless", "train")]

    def length_reward(prompts, responses):
        return [len(r.split()) / 20 for r in responses]

    stage = lab.ppo(
        prompts,
        reward=length_reward,
        beta=0.01,
        max_new_tokens=max_new,
        gradient_accumulation_steps=accumulation,
    )
    stage.step(1, progress=False)  # warm-up: optimizer state allocated, caches built
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    started = time.perf_counter()
    rows = stage.step(steps, progress=False)
    return {
        "gradient_accumulation_steps": accumulation,
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        "peak_rss_after_warmup_gib": round(before, 3),
        "sec_per_step": round((time.perf_counter() - started) / steps, 2),
        "update_s_last_step": round(float(stage.last_timings.get("update", float("nan"))), 2),
        "rollouts_per_step": stage.config.rollouts_per_step,
        "num_minibatches": stage.config.num_minibatches,
        "loss_policy_last": rows[-1]["loss/policy"],
        "response_length_last": rows[-1]["response/length"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="smollm2-135m")
    parser.add_argument("--accumulation", default="1,2,4", help="comma-separated values to compare")
    parser.add_argument("--steps", type=int, default=2, help="measured PPO steps per value")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--smoke", action="store_true", help="tiny preset, one step, 16 tokens (CI)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.preset, args.steps, args.max_new_tokens = "tiny", 1, 16
    if args.child:
        print(json.dumps(run_one(args.preset, args.child, args.steps, args.max_new_tokens)))
        return
    values = [int(v) for v in args.accumulation.split(",")]
    command = [sys.executable, __file__, "--preset", args.preset, "--steps", str(args.steps)]
    command += ["--max-new-tokens", str(args.max_new_tokens)]
    runs = []
    for value in values:
        child = subprocess.run([*command, "--child", str(value)], capture_output=True, text=True, check=False)
        if child.returncode != 0:
            sys.exit(f"gradient_accumulation_steps={value} failed:\n{child.stderr[-3000:]}")
        runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
    base = runs[0]
    print(
        json.dumps(
            {
                "bench": "update_memory",
                "preset": args.preset,
                "command": " ".join(["python bench/update_memory.py", *sys.argv[1:]]),
                "runs": runs,
                "peak_ratio": {
                    str(r["gradient_accumulation_steps"]): round(base["peak_rss_gib"] / r["peak_rss_gib"], 2)
                    for r in runs
                },
                "time_ratio": {
                    str(r["gradient_accumulation_steps"]): round(r["sec_per_step"] / base["sec_per_step"], 2)
                    for r in runs
                },
            }
        )
    )


if __name__ == "__main__":
    main()
