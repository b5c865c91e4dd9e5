import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_store_load_smoke_every_label_present_once():
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "store_load.py"), "--smoke", "--think-ms", "5"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["labels_present"] == report["labels_expected"] == 80 and report["duplicates"] == 0
    assert report["latency_ms_p99"] >= report["latency_ms_p50"] > 0
