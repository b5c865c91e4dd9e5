"""Honest results at small scale: does the pipeline make the policy better by a gold judge?

    python bench/learning_quality.py                          # smollm2-135m, positive_review, its defaults
    python bench/learning_quality.py --preset tiny --seed 1   # the tiny preset, another seed
    python bench/learning_quality.py --preset tiny --smoke    # seconds, for CI

Runs `rlhf_lab.demo.run_demo`: SFT (the preset's schedule) -> a reward model pre-trained on the task's
1,800 bundled pairs rated by three simulated crowd raters (each flips the gold verdict 20% of the time),
fine-tuned on the policy's own samples rated the same way -> RL (the preset's estimator) -> before/after
on every held-out prompt x 2 samples. Prints one JSON line:

- `gold_win_rate` and `gold_win_rate_ci`: how often the gold judge prefers the RL policy's response to the
  starting policy's (ties half), with its 95% Wilson interval; 0.5 = no change. InstructGPT's headline
  (raters preferring the RLHF model) was 0.71.
- `rm_gold_accuracy` (+ `_ci`) on `rm_gold_pairs` pairs of the fixed bundled held-out set (test prompts),
  beside `crowd_gold_agreement`, how often the crowd raters themselves agree with gold there (the ceiling
  a model trained on them is measured against; InstructGPT: RM accuracy 69-77%, rater agreement 73-77%).
- `rl_kl_last`: KL to the starting policy (nats per response) at the end; above ~8 suggests hacking.
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
    parser.add_argument(
        "--pairs", type=int, help="room labels (pairs of the policy's samples) to fine-tune on"
    )
    parser.add_argument("--rl-steps", "--ppo-steps", dest="rl_steps", type=int)
    parser.add_argument("--estimator", choices=["ppo", "rloo", "grpo", "reinforce"])
    parser.add_argument("--beta", type=float, help="KL penalty (default: the preset's schedule)")
    parser.add_argument("--target-kl", type=float, help="adaptive KL controller's target (nats)")
    parser.add_argument("--kl-horizon", type=int, help="the controller's horizon in rollouts")
    parser.add_argument("--rl-lr", type=float, help="the RL learning rate (default: the preset's)")
    parser.add_argument("--eval-prompts", type=int, help="held-out prompts to compare on (default: all 60)")
    parser.add_argument("--eval-samples", type=int, default=2, help="samples per held-out prompt")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CI)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sft_steps, args.pairs, args.rl_steps, args.eval_prompts = 10, 16, 2, 8

    from rlhf_lab.demo import run_demo

    report = run_demo(
        preset=args.preset,
        task=args.task,
        sft_steps=args.sft_steps,
        label_pairs=args.pairs,
        ppo_steps=args.rl_steps,
        seed=args.seed,
        eval_prompts=args.eval_prompts,
        eval_samples=args.eval_samples,
        estimator=args.estimator,
        beta=args.beta,
        target_kl=args.target_kl,
        kl_horizon=args.kl_horizon,
        rl_learning_rate=args.rl_lr,
        n_raters=3,
        flip_prob=0.2,
    )
    keys = [
        "preset",
        "task",
        "seed",
        "device",
        "threads",
        "schedule",
        "labels",
        "raters",
        "rater_flip_prob",
        "rater_agreement",
        "rm_pretrained_on",
        "rm_gold_accuracy",
        "rm_gold_accuracy_ci",
        "rm_gold_pairs",
        "crowd_gold_agreement",
        "estimator",
        "rl_reward_first",
        "rl_reward_last",
        "rl_gold_first",
        "rl_gold_last",
        "rl_kl_last",
        "rl_kl_max",
        "gold_before",
        "gold_after",
        "gold_win_rate",
        "gold_win_rate_ci",
        "eval_comparisons",
        "timings",
    ]
    result = {
        "bench": "learning_quality",
        "command": "python bench/learning_quality.py " + " ".join(argv if argv is not None else sys.argv[1:]),
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
