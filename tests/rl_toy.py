"""Shared toy setup for the RL tests: the tiny preset and a programmatic reward ("e" count)."""

from __future__ import annotations

from rlhf_lab.models.tiny import tiny_policy, tiny_tokenizer
from rlhf_lab.rl import RLStage

# The smallest RLOO run a headless config can ask for: one step, two prompts, two answers each.
ONE_RLOO_STEP = {
    "estimator": "rloo",
    "steps": 1,
    "batch_size": 2,
    "samples_per_prompt": 2,
    "num_minibatches": 1,
    "num_epochs": 1,
    "max_new_tokens": 4,
}

PROMPTS = [
    "Write a positive movie review.",
    "Tell me about the weather.",
    "Describe a cat.",
    "What is a good film?",
]


def e_count(prompts, responses):
    """The toy task: more letter e's is better (dense enough for a random tiny policy to learn)."""
    return [float(r.count("e")) for r in responses]


FAST = dict(batch_size=8, max_new_tokens=8, learning_rate=3e-3, num_epochs=2, num_minibatches=2)


def make_stage(estimator="ppo", reward=e_count, tok=None, seed=0, **overrides) -> RLStage:
    tok = tok or tiny_tokenizer()
    settings = dict(FAST)
    if estimator in ("rloo", "grpo"):
        settings.update(batch_size=4, samples_per_prompt=4)
    settings.update(overrides)
    return RLStage(tiny_policy(tok, seed=seed), tok, PROMPTS, reward, estimator=estimator, **settings)
