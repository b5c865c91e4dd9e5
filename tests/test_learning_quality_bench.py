import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_learning_quality_smoke_prints_one_json_line():
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "learning_quality.py"), "--preset", "tiny", "--smoke"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    report = json.loads(lines[-1])
    assert report["bench"] == "learning_quality" and report["raters"] == 3
    assert 0.0 <= report["gold_win_rate"] <= 1.0
    assert 0.0 <= report["rater_agreement"] <= 1.0
