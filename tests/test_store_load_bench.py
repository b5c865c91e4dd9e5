import pytest
from bench_helpers import run_bench


@pytest.mark.slow
def test_store_load_smoke_every_label_present_once():
    report = run_bench("bench/store_load.py", "--smoke", "--think-ms", "5", timeout=300)
    assert report["labels_present"] == report["labels_expected"] == 80 and report["duplicates"] == 0
    assert report["latency_ms_p99"] >= report["latency_ms_p50"] > 0


@pytest.mark.slow
def test_store_load_import_smoke_every_label_and_row_present_once():
    report = run_bench("bench/store_load.py", "--import-mb", "0.5", "--smoke", timeout=300)
    assert report["all_present_once"] and report["duplicates"] == 0
    assert report["imported_rows"] == report["import_rows"] > 0
    assert report["latency_ms_p99"] >= report["latency_ms_p50"] > 0
