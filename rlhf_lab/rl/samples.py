"""`SampleBuffer`: the prompts, responses and per-sample numbers of the last RL steps.

    >>> buffer = SampleBuffer(keep_steps=50)
    >>> buffer.add(step, prompts, responses, per_sample, components, gold)
    >>> buffer.get(n=8)                  # the 8 most recent samples across kept steps
    >>> buffer.get(step=3)               # the samples of step 3
    >>> buffer.dataframe()               # every kept sample, one row per response

A sample is a dict: step, prompt, response, score, kl, kl_k3, rlhf_reward, length, eos,
score/<objective> for weighted rewards and gold_score when a gold judge is set. Memory is bounded:
only the last `keep_steps` steps are kept. The labeller reads them (RLStage.samples()).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

Sample = dict[str, Any]


class SampleBuffer:
    """The samples of the last `keep_steps` steps, newest last."""

    def __init__(self, keep_steps: int) -> None:
        self._steps: deque[tuple[int, list[Sample]]] = deque(maxlen=keep_steps)

    def add(
        self,
        step: int,
        prompts: Sequence[str],
        responses: Sequence[str],
        per_sample: torch.Tensor,
        components: Mapping[str, torch.Tensor],
        gold: Sequence[float] | None,
    ) -> None:
        """Keep one step's samples; `per_sample` rows are score, kl, kl_k3, rlhf_reward, length, eos."""
        scores, kl, kl3, rlhf_reward, lengths, eos = per_sample.tolist()
        samples = []
        for i, (prompt, response) in enumerate(zip(prompts, responses)):
            sample = {
                "step": step,
                "prompt": prompt,
                "response": response,
                "score": scores[i],
                "kl": kl[i],
                "kl_k3": kl3[i],
                "rlhf_reward": rlhf_reward[i],
                "length": int(lengths[i]),
                "eos": bool(eos[i]),
            }
            sample.update({f"score/{name}": float(values[i]) for name, values in components.items()})
            if gold is not None:
                sample["gold_score"] = gold[i]
            samples.append(sample)
        if self._steps and self._steps[-1][0] == step:  # a retried step replaces its samples
            self._steps.pop()
        self._steps.append((step, samples))

    def get(self, n: int | None = None, step: int | None = None) -> list[Sample]:
        """Samples of `step` (default: the latest), or the `n` most recent across kept steps."""
        if step is not None:
            for kept_step, samples in self._steps:
                if kept_step == step:
                    return list(samples[:n] if n is not None else samples)
            kept = [s for s, _ in self._steps]
            raise KeyError(f"Step {step} is not kept (kept: {kept[:1]}..{kept[-1:]}; see keep_sample_steps).")
        if n is None:
            return list(self._steps[-1][1]) if self._steps else []
        out: list[Sample] = []
        for _, samples in reversed(self._steps):
            out.extend(samples[: n - len(out)])
            if len(out) >= n:
                break
        return out

    def dataframe(self) -> pd.DataFrame:
        """Every kept sample as one DataFrame (one row per response)."""
        return pd.DataFrame([s for _, samples in self._steps for s in samples])

    def save(self, path: Path) -> None:
        """One JSON sample per line."""
        with open(path, "w", encoding="utf-8") as f:
            for _, samples in self._steps:
                for sample in samples:
                    f.write(json.dumps(sample) + "\n")

    def load(self, path: Path) -> None:
        """Add the samples `save` wrote, grouped by step again."""
        by_step: dict[int, list[Sample]] = {}
        with open(path, encoding="utf-8") as f:
            for line in f:
                sample = json.loads(line)
                by_step.setdefault(sample["step"], []).append(sample)
        self._steps.extend(sorted(by_step.items()))

    def __len__(self) -> int:
        return len(self._steps)
