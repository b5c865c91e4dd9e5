"""bench/trl_ppo_compare.py --smoke runs both sides (ours and TRL 1.12's PPOTrainer) and prints one JSON line.

The script installs trl==1.12.0 into bench/.cache/ from PyPI on first use; if that fails the bench
exits non-zero with pip's error, and this test fails with that message (no silent skip).
"""

import pytest
from bench_helpers import run_bench

BENCH_ENV = {"RLHF_LAB_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}


@pytest.mark.slow
def test_trl_ppo_compare_smoke():
    result = run_bench("bench/trl_ppo_compare.py", "--smoke", timeout=900, env=BENCH_ENV, only_line=True)
    assert result["arch"] == "tiny" and result["device"] == "cpu" and result["smoke"] is True
    assert result["versions"]["trl"] == "1.12.0"
    assert result["versions"]["transformers"] and result["versions"]["torch"]
    sides = {"trl", "ours_separate_value", "ours_value_head"}
    assert set(result["sec_per_step"]) == sides and all(v > 0 for v in result["sec_per_step"].values())
    assert set(result["step_times_s"]) == sides
    assert all(len(times) == result["steps"] for times in result["step_times_s"].values())
    assert all(t > 0 for times in result["step_times_s"].values() for t in times)
    assert set(result["ratio_trl_over_ours"]) == {"separate_value", "value_head"}
    assert all(v > 0 for v in result["ratio_trl_over_ours"].values())
    assert result["rollouts_per_step"] == 4 and result["prompt_tokens"] == 8
    assert result["new_tokens"] == result["trl_response_tokens"] == 8
    assert result["epochs_x_minibatches"] == [2, 2]
    assert result["trl_generation_s"] > 0 and result["trl_gc_s"] >= 0
    for breakdown in result["ours_breakdown_s"].values():
        assert set(breakdown) == {"generation", "scoring", "forwards", "update"}
    assert result["threads"] == {"ours": 1, "trl": 1}
    assert isinstance(result["notes"], list) and len(result["notes"]) >= 5
