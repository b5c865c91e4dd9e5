"""`evaluate:` in a headless config: the task's gold judge on its held-out test prompts, before and after
the preference stages (DPO and/or RL: the policy they start from against the one they end with).

    task: helpful_harmless
    evaluate:
      samples: 4        # answers per test prompt, before and after, with the same seed

RL's own numbers are the proxy it was paid by, DPO's its own loss; this is the check neither was. It
reports the gold judge's mean score before and after, how often the answer after beats the one before
with the same prompt and seed (a tie counts half; 0.5 = no change) with its 95% Wilson interval, and on
helpful_harmless the shares of harmless requests answered and harmful ones refused, with intervals
(`rlhf_lab.objectives.refusal_rates`). It lands in summary.json under `evaluation`.

    >>> from rlhf_lab.headless_eval import held_out_answers, compare
    >>> prompts, before = held_out_answers(lab, "helpful_harmless", samples=4, seed=0, max_new_tokens=48)
"""

from __future__ import annotations

from typing import Any

from rlhf_lab.config_checks import optional_section, whole_number_setting
from rlhf_lab.errors import ConfigError

EVALUATE_KEYS = {"samples": 4}
MAX_SAMPLES = 64


def evaluate_settings(config: dict[str, Any]) -> dict[str, Any] | None:
    """The `evaluate` settings with defaults filled in, or None when the config asks for no evaluation."""
    return optional_section(config, "evaluate", EVALUATE_KEYS)


def check_evaluate(config: dict[str, Any]) -> None:
    """ConfigError naming the field for an `evaluate` that cannot be used."""
    settings = evaluate_settings(config)
    if settings is None:
        return
    whole_number_setting(settings["samples"], "evaluate.samples", least=1, most=MAX_SAMPLES)
    if "task" not in config:
        raise ConfigError("evaluate needs a bundled task: its gold judge and held-out test prompts.")
    if not config.get("rl") and not config.get("dpo"):
        raise ConfigError("evaluate compares the policy before and after DPO or RL: add a dpo or rl section.")


def held_out_answers(
    lab: Any,
    task: str,
    *,
    samples: int,
    seed: int,
    max_new_tokens: int | None = None,
    rank: int = 0,
    world: int = 1,
) -> tuple[list[str], list[str]]:
    """(prompts, answers): each of the task's test prompts `samples` times, answered by the policy now
    (`max_new_tokens` None: the lab's default length).

    Under N processes (`rank` of `world`) each answers every N-th prompt and every rank gets all the
    answers, in prompt order: N times less generation than each answering all. The answers then depend on
    N (a batch's sampling draws come from one generator), as the RL run itself does.
    """
    from rlhf_lab.bundled import load_prompts

    prompts = [row["prompt"] for row in load_prompts(task, "test")] * samples
    length = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
    answers = lab.generate(prompts[rank::world], seed=seed, **length)
    if world == 1:
        return prompts, answers
    import torch.distributed as dist

    shards: list[list[str]] = [[] for _ in range(world)]
    dist.all_gather_object(shards, answers)
    return prompts, [shards[i % world][i // world] for i in range(len(prompts))]


def compare(task: str, prompts: list[str], before: list[str], after: list[str]) -> dict[str, Any]:
    """The gold judge's verdict on the same prompts answered before and after (see the module docstring);
    `rlhf-lab demo` reports it too."""
    from rlhf_lab.gold_comparison import gold_scores, wins_over
    from rlhf_lab.objectives import refusal_rates
    from rlhf_lab.raters import get_judge
    from rlhf_lab.reward.evaluation import wilson_interval

    judge = get_judge(task)
    scores_before, scores_after = gold_scores(judge, prompts, before), gold_scores(judge, prompts, after)
    wins = wins_over(scores_after, scores_before)
    win_rate = sum(wins) / len(wins)
    out: dict[str, Any] = {
        "test_prompts": len(set(prompts)),
        "answers": len(prompts),
        "gold_before": sum(scores_before) / len(prompts),
        "gold_after": sum(scores_after) / len(prompts),
        "gold_win_rate": win_rate,
        "gold_win_rate_ci": list(wilson_interval(win_rate, len(wins))),
    }
    if task == "helpful_harmless":
        for when, answers in (("before", before), ("after", after)):
            rates = refusal_rates(prompts, answers)
            for name in ("answers harmless requests", "refuses harmful requests"):
                key = name.replace(" ", "_")
                out[f"{key}_{when}"] = rates[name]
                out[f"{key}_{when}_ci"] = list(rates[f"{name} 95% interval"])
    return out
