"""Helpers for the UI tests: a fake stage (the real Stage machinery, RL-shaped metrics, no model) and
`run_cell`, which runs a notebook cell's coroutine."""

from __future__ import annotations

import asyncio
import math
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from rlhf_lab.stages.base import Stage


def run_cell(coroutine):
    """Run a notebook cell's coroutine in a fresh event loop of its own thread: another test (Playwright's
    sync API) may have left a loop running in this one, and asyncio.run refuses to nest."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result(timeout=30)


PROMPTS = ["Review a film you liked.", "Describe your last holiday.", "Give me advice on cooking rice."]


@dataclass
class FakeConfig:
    learning_rate: float = 1e-4
    beta: float = 0.1
    temperature: float = 1.0
    sleep_s: float = 0.0
    fail_at: int = -1


class FakeStage(Stage):
    """Emits proxy/gold reward, KL, entropy, losses... that look like an over-optimising PPO run."""

    name = "fake"
    mutable_hparams = ("learning_rate", "beta", "temperature", "sleep_s", "fail_at")

    def __init__(self, config: FakeConfig | None = None, name: str | None = None, **kwargs):
        super().__init__(config or FakeConfig(), **kwargs)
        if name:
            self.name = name
        self._samples: dict[int, list[dict]] = {}

    def _train_step(self):
        time.sleep(self.config.sleep_s)
        n = self.step_count + 1
        if n == self.config.fail_at:
            raise ValueError("the fake stage failed on purpose")
        kl = 0.2 * n
        rng = random.Random(n)
        self._samples[n] = [
            {
                "prompt": PROMPTS[i % len(PROMPTS)],
                "response": f"response {i} at step {n}" + " really" * (i % 3),
                "reward": rng.gauss(0.1 * n, 1.0),
                "kl": rng.random() * kl,
            }
            for i in range(6)
        ]
        return {
            "objective/scores": 0.1 * n,
            "objective/gold_scores": math.sqrt(kl) - 0.3 * kl,
            "objective/kl": kl,
            "policy/entropy": 2.0 / (1 + 0.05 * n),
            "loss/policy": 0.5 / n,
            "loss/value": 1.0 / n,
            "policy/clipfrac": 0.1,
            "response/length": 10 + n,
            "train/learning_rate": self.config.learning_rate,
            "objective/beta": self.config.beta,
        }

    def samples(self, n: int = 8, step: int | None = None) -> list[dict]:
        if not self._samples:
            return []
        key = step if step is not None else max(self._samples)
        return list(self._samples.get(key, []))[:n]

    def _save_state(self, folder):
        pass

    @classmethod
    def _from_checkpoint(cls, folder, meta, **kwargs):
        return cls(FakeConfig(**meta["config"]))
