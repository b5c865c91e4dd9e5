"""How to pre-train the bundled reward model: variants judged on a validation split, never on the held-out set.

    python bench/rm_pretraining.py                                   # the default: lr 1e-4, linear, 4/3 passes
    python bench/rm_pretraining.py --schedule constant --steps 80 160 240 320   # accuracy at each step
    python bench/rm_pretraining.py --first-rounds                    # only the 2 disjoint pairs per prompt
    python bench/rm_pretraining.py --seeds 0 1 2 --ensemble          # and the mean-score ensemble of the seeds
    python bench/rm_pretraining.py --preset tiny --steps 4 --seeds 0 # seconds (CI smoke)

Trains the preset's reward backbone on the bundled crowd pairs of training prompts whose crc32 is not
0 mod 5 (~1,420 pairs; ~470 with --first-rounds), and measures accuracy against the gold judge on the
first-round bundled pairs of the other prompts (117). The fixed held-out set of test prompts (`rlhf_lab.bundled.heldout_pairs`) stays
untouched, so choosing a default here does not tune it to the number `learning_quality.py` reports.
Prints one JSON line per seed (and one for the ensemble): accuracy, its 95% interval, seconds.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="smollm2-135m")
    parser.add_argument("--task", default="positive_review")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument(
        "--steps", type=int, nargs="+", help="report after each (default: PRETRAIN_PASSES over the pairs)"
    )
    parser.add_argument(
        "--first-rounds", action="store_true", help="train on the first 600 bundled pairs only (disjoint)"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--schedule", choices=["constant", "linear"], default="linear")
    parser.add_argument("--warmup", type=float, default=0.1, help="share of steps warming up (linear)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--ensemble", action="store_true", help="also score the mean of the seeds' models")
    args = parser.parse_args(argv)

    import torch

    from rlhf_lab import Lab
    from rlhf_lab.bundled import crowd_pairs, load_preferences, preference_pairs
    from rlhf_lab.reward.ensemble import RewardEnsemble
    from rlhf_lab.reward.evaluation import wilson_interval
    from rlhf_lab.reward.pretrained import pretraining_steps
    from rlhf_lab.reward.stage import linear_schedule_share

    torch.set_num_threads(1)
    lab = Lab.from_preset(args.preset, seed=args.seeds[0], store=":memory:")

    def validation(prompt: str) -> bool:
        return zlib.crc32(prompt.encode()) % 5 == 0

    def key(pair: dict) -> tuple[str, ...]:
        return (pair["prompt"], *sorted([pair["chosen"], pair["rejected"]]))

    first_rounds = {
        (r["prompt"], *sorted(r["responses"])) for r in load_preferences(args.task, disjoint=True)
    }
    train = [
        p
        for p in crowd_pairs(args.task)
        if not validation(p["prompt"]) and (not args.first_rounds or key(p) in first_rounds)
    ]
    gold = [
        p for p in preference_pairs(args.task, "gold") if validation(p["prompt"]) and key(p) in first_rounds
    ]
    checkpoints = sorted(args.steps or [pretraining_steps(len(train), args.batch_size)])
    prompts = [p["prompt"] for p in gold]
    settings = {
        k: getattr(args, k) for k in ("preset", "task", "lr", "batch_size", "schedule", "first_rounds")
    }
    results, members = [], []

    def report(what: dict, chosen, rejected, seconds: float) -> None:
        hits = int((chosen > rejected).sum())
        row = {
            "bench": "rm_pretraining",
            **settings,
            **what,
            "val_gold_accuracy": round(hits / len(gold), 4),
            "val_gold_accuracy_ci": [round(x, 4) for x in wilson_interval(hits / len(gold), len(gold))],
            "val_pairs": len(gold),
            "train_pairs": len(train),
            "seconds": round(seconds, 1),
        }
        results.append(row)
        print(json.dumps(row), flush=True)

    total = checkpoints[-1]
    for seed in args.seeds:
        began = time.perf_counter()
        stage = lab.reward_model(
            train, seed=seed, learning_rate=args.lr, batch_size=args.batch_size, split=[1.0, 0.0, 0.0]
        )
        for i in range(total):
            if args.schedule == "linear":
                for group in stage.optimizer.param_groups:
                    group["lr"] = args.lr * linear_schedule_share(i, total, args.warmup)
            stage.step(1, progress=False)
            if i + 1 in checkpoints:
                with torch.no_grad():
                    chosen = stage(prompts, [p["chosen"] for p in gold])
                    rejected = stage(prompts, [p["rejected"] for p in gold])
                report({"seed": seed, "steps": i + 1}, chosen, rejected, time.perf_counter() - began)
        members.append(stage)
    if args.ensemble and len(members) > 1:
        ensemble = RewardEnsemble(members)
        with torch.no_grad():
            chosen = ensemble(prompts, [p["chosen"] for p in gold])
            rejected = ensemble(prompts, [p["rejected"] for p in gold])
        report({"ensemble_of_seeds": args.seeds, "steps": total}, chosen, rejected, 0.0)
    return results


if __name__ == "__main__":
    main()
