"""The wheel carries the widget front-end and the bundled data (package data, not just the repo)."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_ships_widgets_and_data(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(ROOT),
            "-w",
            str(tmp_path),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("rlhf_lab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for widget in (ROOT / "widgets").glob("*.[jc]s*"):
        assert f"rlhf_lab/widgets/{widget.name}" in names
    for data in (ROOT / "rlhf_lab" / "data").glob("*.jsonl"):
        assert f"rlhf_lab/data/{data.name}" in names
    assert "rlhf_lab/data/tiny_corpus.txt" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "rlhf-lab = rlhf_lab.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
