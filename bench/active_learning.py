"""Does choosing what to label beat labelling at random? Lab 06's experiment, repeated over seed sets.

    python bench/active_learning.py --preset tiny --repeats 8
    python bench/active_learning.py --preset smollm2-135m --repeats 6 --strategies random uncertainty
    python bench/active_learning.py --smoke                      # tiny, 2 repeats, 1 round (CI)

One run of lab 06's active-learning section is one draw: each point is one reward model graded on 139
held-out pairs (about +-0.08), so a gap between two curves says little. Here every repeat starts from its
own random seed set of labelled pairs, shared by all strategies (a paired design), and the same simulated
annotator (gold with 10% flips) answers every query, as in the lab. Per strategy and label count it prints
the mean held-out gold accuracy over repeats with a 95% t-interval, and each strategy's mean gain over
random at the last round, paired by repeat, with its interval. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

REPO = Path(__file__).resolve().parents[1]
TASK = "helpful_harmless"


def t_interval(values: list[float]) -> tuple[float, float]:
    """95% t-interval of the mean of `values` (a single value gives (value, value))."""
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, mean
    half = float(stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values)))
    return round(mean - half, 4), round(mean + half, 4)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--repeats", type=int, default=8, help="seed sets (each shared by all strategies)")
    parser.add_argument("--strategies", nargs="+", default=["random", "uncertainty", "disagreement"])
    parser.add_argument("--seed-labels", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8, help="labels asked per round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=4, help="passes per refit (lab 06: 4, batch 16)")
    parser.add_argument(
        "--steps", type=int, default=None, help="optimizer steps per refit instead of --epochs"
    )
    parser.add_argument("--ensemble", type=int, default=3, help="members for 'disagreement'")
    parser.add_argument("--smoke", action="store_true", help="tiny, 2 repeats, 1 round, 1 epoch (CI)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.preset, args.repeats, args.rounds, args.epochs, args.ensemble = "tiny", 2, 1, 1, 2
    sys.path.insert(0, str(REPO))
    from rlhf_lab import Lab
    from rlhf_lab.bundled import load_preferences, load_rankings
    from rlhf_lab.raters import NoisyRater, get_judge, label_with_raters
    from rlhf_lab.store import PreferenceStore
    from rlhf_lab.ui import ActiveLearningSource

    started = time.perf_counter()
    lab = Lab.from_preset(args.preset, store=":memory:")
    judge = get_judge(TASK)
    rankings = load_rankings(TASK)
    test_prompts = {r["prompt"] for r in rankings}
    held_out = [
        (r["prompt"], r["responses"][i], r["responses"][j], r["gold_scores"][i] - r["gold_scores"][j])
        for r in rankings
        for i, j in itertools.combinations(range(4), 2)
        if r["gold_scores"][i] != r["gold_scores"][j]
    ]
    pool = [
        {"prompt": r["prompt"], "responses": r["responses"]}
        for r in load_preferences(TASK, disjoint=True)
        if r["prompt"] not in test_prompts
    ]
    rater = NoisyRater(judge, flip_prob=0.1, seed=3, name="sim-rater")
    schedule = {"steps": args.steps} if args.steps else {"epochs": args.epochs}
    rm_settings = {**schedule, "batch_size": 16, "split": [1.0, 0.0, 0.0]}

    def gold_accuracy(reward) -> float:
        prompts, a, b, truth = zip(*held_out)
        margins = reward.score_pairs(list(prompts), list(a), list(b)).numpy()
        return float(np.mean(np.sign(margins) == np.sign(truth)))

    def ask(store, items) -> None:
        label_with_raters(store, [(it["prompt"], *it["responses"]) for it in items], [rater])

    def curve(strategy: str, repeat: int) -> list[float]:
        torch.manual_seed(repeat)  # dropout draws: every strategy's first fit of a repeat is the same fit
        seed_items = random.Random(1000 + repeat).sample(pool, args.seed_labels)
        rest = [item for item in pool if item not in seed_items]
        store = PreferenceStore(":memory:")
        ask(store, seed_items)
        if strategy == "disagreement":
            reward = lab.reward_ensemble(args.ensemble, store, seed=repeat, **rm_settings)
            scorers = reward.members
        else:
            reward = lab.reward_model(store, seed=repeat, **rm_settings)
            scorers = [reward]
        source = ActiveLearningSource(rest, scorers, strategy=strategy, seed=repeat)
        accuracies = []
        for round_ in range(args.rounds + 1):
            if round_:
                ask(store, source.next(args.batch))
            reward.fit(warm_start=False, progress=False)
            accuracies.append(gold_accuracy(reward))
        return accuracies

    curves: dict[str, list[list[float]]] = {s: [] for s in args.strategies}
    for repeat in range(args.repeats):
        for strategy in args.strategies:
            curves[strategy].append(curve(strategy, repeat))
            last = curves[strategy][-1]
            print(
                f"repeat {repeat} {strategy:12s} {' '.join(f'{a:.3f}' for a in last)} "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )

    labels = [args.seed_labels + args.batch * r for r in range(args.rounds + 1)]
    summary: dict[str, dict] = {}
    for strategy, rows in curves.items():
        by_round = np.array(rows)
        summary[strategy] = {
            "mean": [round(float(x), 4) for x in by_round.mean(0)],
            "ci95": [t_interval(list(col)) for col in by_round.T],
        }
        if strategy != "random" and "random" in curves:
            gains = list(by_round[:, -1] - np.array(curves["random"])[:, -1])
            summary[strategy]["gain_over_random_last"] = round(float(np.mean(gains)), 4)
            summary[strategy]["gain_over_random_last_ci95"] = t_interval(gains)
    print(
        f"\nheld-out gold accuracy on {len(held_out)} pairs, mean over {args.repeats} seed sets [95% interval]"
    )
    print("labels  " + "  ".join(f"{s:>22s}" for s in curves))
    for i, n in enumerate(labels):
        cells = [
            f"{summary[s]['mean'][i]:.3f} [{summary[s]['ci95'][i][0]:.3f}, {summary[s]['ci95'][i][1]:.3f}]"
            for s in curves
        ]
        print(f"{n:6d}  " + "  ".join(f"{c:>22s}" for c in cells))
    for strategy, row in summary.items():
        if "gain_over_random_last" in row:
            low, high = row["gain_over_random_last_ci95"]
            print(
                f"{strategy} - random at {labels[-1]} labels: {row['gain_over_random_last']:+.3f} "
                f"[{low:+.3f}, {high:+.3f}] (paired by seed set)"
            )
    result = {
        "bench": "active_learning",
        "command": "python bench/active_learning.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "preset": args.preset,
        "repeats": args.repeats,
        "labels": labels,
        "held_out_pairs": len(held_out),
        "pool_pairs": len(pool),
        "rm": {**schedule, "batch_size": 16},
        "strategies": summary,
        "curves": curves,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
