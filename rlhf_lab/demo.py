"""The whole pipeline, headless: SFT -> simulated labels -> reward model -> PPO -> a short report.

    >>> from rlhf_lab.demo import run_demo
    >>> report = run_demo(preset="tiny", task="positive_review")
    >>> print(report["text"])

`rlhf-lab demo` calls this. The simulated rater is the task's gold judge with 10% of its
verdicts flipped, so the reward model learns from imperfect labels as it would from people, and
the gold judge itself scores the result on held-out prompts.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from rlhf_lab.agreement import store_agreement
from rlhf_lab.bundled import load_demos, load_prompts
from rlhf_lab.lab import Lab
from rlhf_lab.raters import NoisyRater, get_judge, label_with_raters

# Steps per preset: enough to see every effect, small enough for a laptop CPU.
SCHEDULES = {
    "tiny": {"sft_steps": 150, "label_pairs": 200, "rm_epochs": 6, "ppo_steps": 20, "beta": 0.1},
    "smollm2-135m": {"sft_steps": 20, "label_pairs": 48, "rm_epochs": 3, "ppo_steps": 10, "beta": 0.05},
}


def gold_win_rate(judge: Any, prompts: list[str], before: list[str], after: list[str]) -> float:
    """Fraction of prompts where the gold judge prefers `after` (ties count half)."""
    wins = 0.0
    for prompt, a, b in zip(prompts, after, before):
        score_a, score_b = judge.score(prompt, a), judge.score(prompt, b)
        wins += 1.0 if score_a > score_b else 0.5 if score_a == score_b else 0.0
    return wins / max(1, len(prompts))


def run_demo(
    preset: str = "tiny",
    task: str = "positive_review",
    *,
    sft_steps: int | None = None,
    label_pairs: int | None = None,
    ppo_steps: int | None = None,
    seed: int = 0,
    workdir: str | None = None,
    eval_prompts: int = 32,
    n_raters: int = 1,
    flip_prob: float = 0.1,
) -> dict[str, Any]:
    """Run the pipeline and return a report dict (its "text" entry is the printable summary)."""
    schedule = dict(SCHEDULES.get(preset, SCHEDULES["smollm2-135m"]))
    for key, value in (("sft_steps", sft_steps), ("label_pairs", label_pairs), ("ppo_steps", ppo_steps)):
        if value is not None:
            schedule[key] = value
    folder = Path(workdir or tempfile.mkdtemp(prefix="rlhf-lab-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    lab = Lab.from_preset(preset, seed=seed, store=folder / "labels.sqlite")
    judge = get_judge(task)
    train_prompts = [row["prompt"] for row in load_prompts(task, "train")]
    test_prompts = [row["prompt"] for row in load_prompts(task, "test")][:eval_prompts]

    # 1. SFT on the demonstrations.
    t = time.perf_counter()
    sft = lab.sft(load_demos(task))
    sft_rows = sft.step(schedule["sft_steps"], progress=False)
    timings["sft_s"] = time.perf_counter() - t
    lab.snapshot("sft")

    # 2. Preference data: two samples per prompt from the SFT policy, judged by a noisy rater.
    t = time.perf_counter()
    label_prompts = train_prompts[: schedule["label_pairs"]]
    first = lab.generate(label_prompts, seed=seed + 1)
    second = lab.generate(label_prompts, seed=seed + 2)
    items = [(p, a, b) for p, a, b in zip(label_prompts, first, second) if a.strip() and b.strip() and a != b]
    raters = [NoisyRater(judge, flip_prob=flip_prob, seed=seed + i) for i in range(n_raters)]
    label_with_raters(lab.store, items, raters)
    agreement = store_agreement(lab.store) if n_raters > 1 else {}
    timings["label_s"] = time.perf_counter() - t

    # 3. Reward model on the store's labels.
    t = time.perf_counter()
    rm = lab.reward_model()
    rm_summary = rm.fit(epochs=schedule["rm_epochs"], warm_start=False, progress=False)
    rm_eval = rm.evaluate("val", gold=judge, log=True)
    timings["reward_model_s"] = time.perf_counter() - t

    # 4. PPO against the reward model, KL to the SFT policy, gold judge watching.
    t = time.perf_counter()
    ppo = lab.ppo(train_prompts, reward=rm, gold=judge, beta=schedule["beta"])
    ppo_rows = ppo.step(schedule["ppo_steps"], progress=False)
    timings["ppo_s"] = time.perf_counter() - t

    # 5. Held-out comparison by the gold judge.
    before = lab.generate(test_prompts, model=lab.snapshots["sft"], seed=seed + 3)
    after = lab.generate(test_prompts, seed=seed + 3)
    win_rate = gold_win_rate(judge, test_prompts, before, after)
    mean = lambda xs: sum(xs) / max(1, len(xs))  # noqa: E731
    gold_before = mean([judge.score(p, r) for p, r in zip(test_prompts, before)])
    gold_after = mean([judge.score(p, r) for p, r in zip(test_prompts, after)])
    timings["total_s"] = time.perf_counter() - started

    report = {
        "preset": preset,
        "task": task,
        "device": str(lab.device),
        "sft_loss_first": sft_rows[0]["loss/sft"],
        "sft_loss_last": sft_rows[-1]["loss/sft"],
        "labels": lab.store.count(),
        "raters": n_raters,
        "rater_flip_prob": flip_prob,
        "rater_agreement": agreement.get("percent_agreement"),
        "rm_val_accuracy": rm_eval.get("accuracy"),
        "rm_val_pairs": rm_eval.get("n_pairs"),
        "rm_gold_accuracy": rm_eval.get("gold_accuracy"),
        "rm_fit_seconds": rm_summary.get("seconds"),
        "ppo_scores_first": ppo_rows[0]["objective/scores"],
        "ppo_scores_last": ppo_rows[-1]["objective/scores"],
        "ppo_kl_last": ppo_rows[-1]["objective/kl"],
        "gold_before": gold_before,
        "gold_after": gold_after,
        "gold_win_rate": win_rate,
        "example_prompt": test_prompts[0],
        "example_before": before[0],
        "example_after": after[0],
        "timings": timings,
        "workdir": str(folder),
    }
    report["text"] = format_report(report)
    return report


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def format_report(r: dict[str, Any]) -> str:
    t = r["timings"]
    return "\n".join(
        [
            f"rlhf-lab demo: preset {r['preset']}, task {r['task']}, on {r['device']}",
            f"  SFT            loss {_fmt(r['sft_loss_first'])} -> {_fmt(r['sft_loss_last'])}  ({t['sft_s']:.1f} s)",
            f"  labels         {r['labels']} labels from {r['raters']} noisy simulated rater(s)"
            f" (agreement {_fmt(r['rater_agreement'])})  ({t['label_s']:.1f} s)",
            f"  reward model   held-out accuracy {_fmt(r['rm_val_accuracy'])} on {r['rm_val_pairs']} pairs, vs gold "
            f"{_fmt(r['rm_gold_accuracy'])}  ({t['reward_model_s']:.1f} s)",
            f"  PPO            reward {_fmt(r['ppo_scores_first'])} -> {_fmt(r['ppo_scores_last'])}, "
            f"KL {_fmt(r['ppo_kl_last'])} nats  ({t['ppo_s']:.1f} s)",
            f"  gold judge     {_fmt(r['gold_before'])} (SFT) -> {_fmt(r['gold_after'])} (PPO); "
            f"PPO wins {100 * r['gold_win_rate']:.0f}% of held-out prompts",
            f"  example        {r['example_prompt']!r}",
            f"    SFT: {r['example_before']!r}",
            f"    PPO: {r['example_after']!r}",
            f"  total {t['total_s']:.1f} s; store and checkpoints in {r['workdir']}",
        ]
    )
