"""What the lab costs on a CPU: seconds per PPO step on the `tiny` and `smollm2-135m` presets.

    python bench/cpu_budget.py            # tiny and smollm2-135m (about a minute or two)
    python bench/cpu_budget.py --smoke    # tiny only, seconds (CI)

Prints ONE JSON line. Each preset runs as a notebook would: `Lab.from_preset(name, device="cpu")`
(so the lab's CPU thread setting applies), PPO with the preset's defaults (rollout batch,
max_new_tokens, learning rate) against the preset's reward-model backbone, median over a few
steps after one warm-up step.

"rm_retrain_s" is the flywheel's wait: seconds for a warm-start `fit()` (the RMConfig's
`warm_start_epochs`, default 1 pass) after 10 new labels arrive in the store, on a reward model
already fitted on the bundled positive_review gold labels (RM_BASE_LABELS of them), median over
`--steps` rounds. Each preset uses its own reward backbone (tiny: the tiny GPT-2 head; smollm2-135m:
all-MiniLM-L6-v2).

Adding a measurement: write a function `(lab, args) -> float` and register it in MEASUREMENTS
under the key it reports; every preset then reports it next to "ppo_step_s".
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlhf_lab import Lab  # noqa: E402
from rlhf_lab.rl import ModelReward  # noqa: E402

PROMPTS = [
    "Write a short positive review of a film you enjoyed.",
    "Explain why the sky looks blue, in two sentences.",
    "Give me three tips for a first day at a new job.",
    "Describe a quiet morning in a small town.",
    "What should I pack for a weekend hike?",
    "Summarise the plot of a heist movie in one paragraph.",
    "How do I make a simple tomato sauce?",
    "Tell a friendly joke about cats.",
]


def measure_ppo_step(lab: Lab, args: argparse.Namespace) -> float:
    """Median seconds per PPO step (preset defaults, reward = the preset's reward backbone)."""
    reward_model, reward_tokenizer = lab.new_reward_backbone()
    stage = lab.ppo(PROMPTS, reward=ModelReward(reward_model, reward_tokenizer))
    stage.step(progress=False)  # warm-up: first-call allocations, lazy imports
    times = []
    for _ in range(args.steps):
        started = time.perf_counter()
        stage.step(progress=False)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


RM_BASE_LABELS = 40  # labels the reward model is first fitted on
RM_NEW_LABELS = 10  # labels that arrive before each timed warm-start retrain


def measure_rm_retrain(lab: Lab, args: argparse.Namespace) -> float:
    """Median seconds of a warm-start reward-model fit() after RM_NEW_LABELS new labels."""
    from rlhf_lab.bundled import load_preferences
    from rlhf_lab.store import PreferenceStore

    rounds = args.steps
    rows = load_preferences("positive_review")[: RM_BASE_LABELS + RM_NEW_LABELS * rounds]
    labels = [
        {"prompt": r["prompt"], "responses": r["responses"], "judgement": r["judgements"]["gold"]}
        for r in rows
    ]
    with tempfile.TemporaryDirectory() as folder:
        store = PreferenceStore(Path(folder) / "labels.sqlite")
        for label in labels[:RM_BASE_LABELS]:
            store.add(**label, annotator="bench")
        rm = lab.reward_model(store)
        rm.fit(warm_start=False, epochs=1, progress=False)  # the model the new labels top up
        times = []
        for i in range(rounds):
            start = RM_BASE_LABELS + i * RM_NEW_LABELS
            for label in labels[start : start + RM_NEW_LABELS]:
                store.add(**label, annotator="bench")
            started = time.perf_counter()
            rm.fit(warm_start=True, progress=False)
            times.append(time.perf_counter() - started)
        store.close()
    return statistics.median(times)


MEASUREMENTS: dict[str, Callable[[Lab, argparse.Namespace], float]] = {
    "ppo_step_s": measure_ppo_step,
    "rm_retrain_s": measure_rm_retrain,
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny preset only, 2 steps (CI)")
    parser.add_argument(
        "--steps", type=int, default=None, help="measured steps per preset (default 3; smoke 2)"
    )
    parser.add_argument("--presets", nargs="*", default=None, help="default: tiny smollm2-135m (smoke: tiny)")
    args = parser.parse_args(argv)
    args.steps = args.steps or (2 if args.smoke else 3)
    presets = args.presets or (["tiny"] if args.smoke else ["tiny", "smollm2-135m"])

    result: dict = {"bench": "cpu_budget", "smoke": args.smoke, "torch": torch.__version__, "presets": {}}
    for name in presets:
        lab = Lab.from_preset(name, device="cpu")
        row = {
            "threads": lab.threads,
            **{k: lab.defaults[k] for k in ("rollouts_per_step", "max_new_tokens")},
            # "bf16" where the preset asks for it and the CPU multiplies bf16 natively (Lab.__init__).
            "mixed_precision": lab.defaults.get("mixed_precision", "stage default"),
        }
        for key, measure in MEASUREMENTS.items():
            row[key] = round(measure(lab, args), 4)
        result["presets"][name] = row
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
