"""The wheel carries the widget front-end and the bundled data (package data, not just the repo)."""

import os
import subprocess
import sys
import sysconfig
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


def test_widgets_are_found_in_a_source_checkout_without_an_install(tmp_path):
    """A checkout on PYTHONPATH with no `pip install` (how the GPU machine runs the labs) has no package
    `rlhf_lab.widgets`, which only the install maps to widgets/: the labeller uses the checkout's folder.
    `python -S` leaves out the editable install's import hook, so only PYTHONPATH finds rlhf_lab."""
    site = sysconfig.get_paths()["purelib"]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{site}"}
    code = "from rlhf_lab.ui.labeller import WIDGETS; print(WIDGETS)"
    done = subprocess.run(
        [sys.executable, "-S", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == ROOT / "widgets"
