import pytest
from bench_helpers import run_bench


@pytest.mark.slow
def test_learning_quality_smoke_prints_one_json_line():
    report = run_bench("bench/learning_quality.py", "--preset", "tiny", "--smoke", timeout=600)
    assert report["bench"] == "learning_quality" and report["raters"] == 3
    assert 0.0 <= report["gold_win_rate"] <= 1.0
    assert 0.0 <= report["rater_agreement"] <= 1.0
