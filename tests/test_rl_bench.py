"""The benchmark scripts run (--smoke, tiny sizes on CPU) and print one parseable JSON line each."""

import pytest
from bench_helpers import run_bench

BENCH_ENV = {"RLHF_LAB_THREADS": "1", "HF_HUB_OFFLINE": "1"}


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["ppo", "rloo"])
def test_ppo_throughput_smoke(estimator):
    result = run_bench(
        "bench/ppo_throughput.py",
        "--smoke",
        "--estimator",
        estimator,
        timeout=600,
        env=BENCH_ENV,
        only_line=True,
    )
    assert result["arch"] == "tiny" and result["estimator"] == estimator and result["device"] == "cpu"
    assert result["sec_per_step"] > 0 and result["generated_tokens_per_s"] > 0
    assert set(result["breakdown_s"]) == {"generation", "scoring", "forwards", "update"}
    assert result["trl_reference_h100_s"]["ppo/gpt2"] == 2.87


@pytest.mark.slow
def test_compile_check_smoke():
    """Both compiled modes take the eager step on the CPU (where "reduce-overhead" has no CUDA graphs).
    The second mode compiles mostly from the first one's cached graphs, so asking for one saves little."""
    result = run_bench("bench/compile_check.py", "--smoke", timeout=600, env=BENCH_ENV, only_line=True)
    assert result["eager"]["first_minibatch_ratio"] == pytest.approx(1.0, abs=1e-5)
    # The step moved the weights, so agreeing with it means something.
    assert result["eager"]["largest_weight_move"] > 1e-4
    for mode in ("default", "reduce-overhead"):
        assert result["modes"][mode]["agrees_with_eager"], result["modes"][mode]
        assert result["modes"][mode]["cuda_graphs"] is False


@pytest.mark.slow
def test_compile_time_smoke():
    result = run_bench(
        "bench/compile_time.py", "--smoke", "--mode", "blocks", timeout=600, env=BENCH_ENV, only_line=True
    )
    assert result["arch"] == "tiny" and result["mode"] == "blocks" and result["call_lengths"] == [48, 56, 64]
    assert result["first_call_s"] > 0 and len(result["later_calls_s"]) == 2


@pytest.mark.slow
def test_levers_smoke():
    result = run_bench("bench/levers.py", "--smoke", timeout=600, env=BENCH_ENV, only_line=True)
    assert set(result["levers"]) == {"adamw", "generation", "logprobs", "value", "precision"}
    for name, lever in result["levers"].items():
        assert lever["baseline_s"] > 0 and lever["fast_s"] > 0, name
        assert lever["speedup"] == pytest.approx(lever["baseline_s"] / lever["fast_s"], rel=0.05), name


@pytest.mark.slow
def test_lab_memory_smoke():
    result = run_bench("bench/lab_memory.py", "--smoke", timeout=600, env=BENCH_ENV, only_line=True)
    assert set(result["modes"]) == {"copy_and_keep", "share_and_release"}
    for phases in result["modes"].values():
        assert [p["phase"] for p in phases][-1] == "run 4 (retrained)"
        assert all(p["rss_gib"] > 0 and p["peak_rss_gib"] >= p["rss_gib"] * 0.99 for p in phases)
    # freeing finished stages leaves fewer live tensors, even on tiny
    assert result["end_live_ratio"] > 1


@pytest.mark.slow
def test_update_memory_smoke():
    result = run_bench("bench/update_memory.py", "--smoke", timeout=600, env=BENCH_ENV, only_line=True)
    runs = {r["gradient_accumulation_steps"]: r for r in result["runs"]}
    assert set(runs) == {1, 2, 4} and all(
        r["peak_rss_gib"] > 0 and r["sec_per_step"] > 0 for r in runs.values()
    )
    # the same rollouts and the same update whatever the slicing
    assert runs[4]["loss_policy_last"] == pytest.approx(runs[1]["loss_policy_last"], rel=1e-4, abs=1e-6)


@pytest.mark.slow
def test_judge_formats_smoke():
    result = run_bench("bench/judge_formats.py", "--smoke", timeout=600, env=BENCH_ENV, only_line=True)
    assert result["pairs"] == 16 and sum(result["kinds"].values()) == 16
    formats = {"raw_pairwise", "chat_pairwise", "chat_pairwise_one_order", "pointwise_drawn", "pointwise_all"}
    assert formats <= set(result["agreement_with_gold"])
    assert all(0 <= result["agreement_with_gold"][f] <= 1 for f in formats)


@pytest.mark.slow
def test_lab_times_smoke():
    result = run_bench("bench/lab_times.py", "--smoke", timeout=600, env=BENCH_ENV, only_line=True)
    assert result["lab"] == "07_rlaif_constitution" and result["preset"] == "tiny" and result["quick"]
    assert result["ok"] and result["error"] is None and result["wall_s"] > 0
    assert result["cells_run"] > 5 and len(result["slowest_cells"]) == 3
