"""Memory of lab 04's flow (four PPO runs from one SFT model): before and after freeing finished stages.

    python bench/lab_memory.py                     # smollm2-135m, one PPO step a run (about 10 min on 2 cores)
    python bench/lab_memory.py --preset tiny       # seconds (CI: --smoke)

Prints ONE JSON line. Each mode runs in a fresh child process (a process's peak RSS never goes
down, so two modes in one process would hide the second's peak), the same flow as
labs/04_reward_hacking.ipynb with one PPO step per run: SFT, snapshot, a length-biased reward
model, a PPO run kept for its curves, then three more runs from the SFT weights (beta 0.3, an
ensemble of 2, the retrained model). Modes:

- "copy_and_keep": what the lab did before `Stage.release()`: every run makes its own frozen copy
  of the policy as reference and keeps its optimizer state until its variable is overwritten.
- "share_and_release": the lab now: runs started from the "sft" snapshot use it as their
  reference (Lab.rl does this by itself) and each finished run calls `release()`.

Per phase: "live_gib" (bytes of the tensors Python can reach), "rss_gib" (what the OS sees) and
"peak_rss_gib" (the process's high-water mark so far, getrusage).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODES = ("copy_and_keep", "share_and_release")


def _live_gib() -> float:
    import torch

    seen, total = set(), 0
    for obj in gc.get_objects():
        if isinstance(obj, torch.Tensor):
            storage = obj.untyped_storage()
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                total += storage.nbytes()
    return total / 2**30


def run_mode(mode: str, preset: str, prompts: int) -> dict:
    """Lab 04's flow in this process; returns the phases' memory."""
    import psutil
    import torch

    sys.path.insert(0, str(REPO))
    from rlhf_lab import Lab
    from rlhf_lab.bundled import load_demos, load_prompts
    from rlhf_lab.raters import LengthBiasedRater, get_judge, label_with_raters

    torch.manual_seed(0)
    process, started, phases = psutil.Process(), time.perf_counter(), []

    def phase(name: str) -> None:
        gc.collect()
        phases.append(
            {
                "phase": name,
                "live_gib": round(_live_gib(), 3),
                "rss_gib": round(process.memory_info().rss / 2**30, 3),
                "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )

    release = mode == "share_and_release"
    task, max_new = "helpful_harmless", 64
    lab = Lab.from_preset(preset, store=":memory:", seed=0)
    judge = get_judge(task)
    train = [row["prompt"] for row in load_prompts(task, "train")]
    lab.sft(load_demos(task)).step(2, progress=False)
    lab.snapshot("sft")
    phase("sft and snapshot")
    asked = train[:prompts]
    first = lab.generate(asked, seed=1, max_new_tokens=max_new)
    second = lab.generate(asked, seed=2, max_new_tokens=max_new)
    items = [(p, a, b) for p, a, b in zip(asked, first, second) if a.strip() and b.strip() and a != b]
    label_with_raters(lab.store, items, [LengthBiasedRater(judge, strength=0.8, seed=0)])
    proxy = lab.reward_model(split=[0.7, 0.3, 0.0], epochs=1)
    proxy.fit(warm_start=False, progress=False)
    phase("reward model")

    def ppo(reward, beta):
        # the old behaviour: a frozen deep copy of the policy as every run's reference
        own = {} if release else {"ref_policy": copy.deepcopy(lab.policy)}
        stage = lab.ppo(train, reward=reward, gold=judge, beta=beta, max_new_tokens=max_new, **own)
        stage.step(1, progress=False)
        return stage

    hacked = ppo(proxy, 0.01)
    phase("first PPO run")
    if release:
        hacked.release()
    lab.restore("sft")
    run = ppo(proxy, 0.3)
    if release:
        run.release()
    phase("run 2 (beta 0.3)")
    ensemble = lab.reward_ensemble(2, k=1.0, split=[0.7, 0.3, 0.0], epochs=1)
    ensemble.fit(warm_start=False, progress=False)
    ensemble.reduce = "conservative"
    lab.restore("sft")
    run = ppo(ensemble, 0.01)
    if release:
        run.release()
    phase("run 3 (ensemble)")
    lab.restore("sft")
    run = ppo(proxy, 0.01)
    if release:
        run.release()
    phase("run 4 (retrained)")
    return {"mode": mode, "phases": phases, "steps_kept": len(hacked.history)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="smollm2-135m")
    parser.add_argument("--prompts", type=int, default=16, help="prompts labelled for the reward model")
    parser.add_argument("--smoke", action="store_true", help="tiny preset, 8 prompts (CI)")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.preset, args.prompts = "tiny", 8
    if args.child:
        print(json.dumps(run_mode(args.child, args.preset, args.prompts)))
        return
    command = [sys.executable, __file__, "--preset", args.preset, "--prompts", str(args.prompts)]
    results = {}
    for mode in MODES:
        child = subprocess.run([*command, "--child", mode], capture_output=True, text=True, check=False)
        if child.returncode != 0:
            sys.exit(f"{mode} failed:\n{child.stderr[-3000:]}")
        results[mode] = json.loads(child.stdout.strip().splitlines()[-1])["phases"]
    before, after = (results[mode][-1] for mode in MODES)
    print(
        json.dumps(
            {
                "bench": "lab_memory",
                "preset": args.preset,
                "command": " ".join(["python bench/lab_memory.py", *sys.argv[1:]]),
                "modes": results,
                "peak_rss_gib": {mode: results[mode][-1]["peak_rss_gib"] for mode in MODES},
                "end_rss_gib": {mode: results[mode][-1]["rss_gib"] for mode in MODES},
                "peak_ratio": round(before["peak_rss_gib"] / after["peak_rss_gib"], 2),
                "end_live_ratio": round(before["live_gib"] / max(after["live_gib"], 1e-9), 2),
            }
        )
    )


if __name__ == "__main__":
    main()
