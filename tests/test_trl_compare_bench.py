"""bench/trl_rloo_compare.py --smoke runs TRL's RLOOTrainer and our RLOO side by side and prints one JSON line."""

import pytest
from bench_helpers import run_bench

BENCH_ENV = {"RLHF_LAB_THREADS": "1", "HF_HUB_OFFLINE": "1"}


@pytest.mark.slow
def test_trl_rloo_compare_smoke():
    result = run_bench("bench/trl_rloo_compare.py", "--smoke", timeout=600, env=BENCH_ENV, only_line=True)
    assert result["arch"] == "tiny" and result["device"] == "cpu" and result["smoke"] is True
    assert result["samples_per_cycle"] == 4 and result["epochs_x_minibatches"] == [2, 2]
    for key in ("torch", "transformers_version", "trl_version", "precision", "notes"):
        assert result[key]
    assert result["ratio_trl_over_ours"] > 0
    for side in ("ours", "trl"):
        measured = result[side]
        assert measured["sec_per_cycle"] > 0 and measured["generated_tokens_per_s"] > 0
        assert len(measured["cycle_times_s"]) == result["measured_cycles"]
        assert all(t > 0 for t in measured["cycle_times_s"])
        assert set(measured["breakdown_s"]) == {"generation", "scoring", "forwards", "update"}
        assert all(v > 0 for v in measured["breakdown_s"].values())
        assert measured["optimizer_steps_per_cycle"] == 4
    # TRL really generated the fixed-length workload from the same prompts.
    assert result["trl"]["completion_tokens_seen"] == [result["new_tokens"]]
    assert result["trl"]["prompt_tokens_seen"] == [result["prompt_tokens"]]
    assert result["trl"]["config"]["generation_batch_size"] == result["samples_per_cycle"]
