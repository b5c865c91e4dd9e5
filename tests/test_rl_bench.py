"""The benchmark scripts run (--smoke, tiny sizes on CPU) and print one parseable JSON line each."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_bench(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        env={**os.environ, "RLHF_LAB_THREADS": "1", "HF_HUB_OFFLINE": "1"},
    )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, done.stdout
    return json.loads(lines[0])


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["ppo", "rloo"])
def test_ppo_throughput_smoke(estimator):
    result = run_bench("bench/ppo_throughput.py", "--smoke", "--estimator", estimator)
    assert result["arch"] == "tiny" and result["estimator"] == estimator and result["device"] == "cpu"
    assert result["sec_per_step"] > 0 and result["generated_tokens_per_s"] > 0
    assert set(result["breakdown_s"]) == {"generation", "scoring", "forwards", "update"}
    assert result["trl_reference_h100_s"]["ppo/gpt2"] == 2.87


@pytest.mark.slow
def test_cpu_budget_smoke():
    result = run_bench("bench/cpu_budget.py", "--smoke")
    assert list(result["presets"]) == ["tiny"]
    assert result["presets"]["tiny"]["ppo_step_s"] > 0 and result["presets"]["tiny"]["threads"] == 1
