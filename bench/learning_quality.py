"""Honest results at small scale: does the pipeline make the policy better by a gold judge?

    python bench/learning_quality.py                          # smollm2-135m, positive_review
    python bench/learning_quality.py --preset tiny --smoke    # seconds, for CI

Runs SFT -> labels from three noisy simulated raters (each flips the gold judge's verdict with
probability 0.2, so they agree with each other about 70% of the time, like human labellers) ->
reward model -> PPO, then prints one JSON line with the gold-judge win rate of the PPO policy over
the SFT policy on held-out prompts (InstructGPT's headline: 71%), the reward model's held-out
accuracy next to the raters' agreement (InstructGPT: 69-77% accuracy, 73-77% agreement), and the
KL reached.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="smollm2-135m")
    parser.add_argument("--task", default="positive_review")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sft-steps", type=int)
    parser.add_argument("--pairs", type=int)
    parser.add_argument("--ppo-steps", type=int)
    parser.add_argument("--eval-prompts", type=int, default=48)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CI)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sft_steps, args.pairs, args.ppo_steps, args.eval_prompts = 10, 24, 2, 8

    from rlhf_lab.demo import run_demo

    report = run_demo(
        preset=args.preset,
        task=args.task,
        sft_steps=args.sft_steps,
        label_pairs=args.pairs,
        ppo_steps=args.ppo_steps,
        seed=args.seed,
        eval_prompts=args.eval_prompts,
        n_raters=3,
        flip_prob=0.2,
    )
    keys = [
        "preset",
        "task",
        "device",
        "labels",
        "raters",
        "rater_flip_prob",
        "rater_agreement",
        "rm_val_accuracy",
        "rm_val_pairs",
        "rm_gold_accuracy",
        "ppo_scores_first",
        "ppo_scores_last",
        "ppo_kl_last",
        "gold_before",
        "gold_after",
        "gold_win_rate",
        "timings",
    ]
    result = {
        "bench": "learning_quality",
        **{k: report[k] for k in keys},
        "reference": {
            "instructgpt_win_rate": 0.71,
            "instructgpt_rm_accuracy": [0.69, 0.77],
            "instructgpt_agreement": [0.73, 0.77],
        },
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
