"""bench/gpu_suite.sh: models carried in parts are unpacked only when whole, the budget skips, smoke runs."""

import hashlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "bench" / "gpu_suite.sh"


def run_suite(tmp_path: Path, *args: str, parts: Path | None = None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PY": sys.executable,
        "RLHF_SUITE_SITE": str(tmp_path / "site"),
        "RLHF_SUITE_WHEELS": str(tmp_path / "no-wheels"),
        "RLHF_SUITE_LAB_WHEELS": str(tmp_path / "no-lab-wheels"),
        "RLHF_SUITE_PARTS": str(parts or tmp_path / "no-parts"),
        "RLHF_SUITE_STASH": str(tmp_path / "stash"),
        "RLHF_LAB_THREADS": "1",
    }
    env.pop("OUT", None)
    return subprocess.run(
        ["bash", str(SUITE), "--out", str(tmp_path / "out"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def results(tmp_path: Path) -> list[dict]:
    path = tmp_path / "out" / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def split_tar(tmp_path: Path, calls: int) -> list[Path]:
    """A tar holding one small package, cut into `calls` parts, each in its own folder with the MANIFEST."""
    package = tmp_path / "src" / "carried_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("VALUE = 42\n" + "# padding\n" * 500)
    tar_path = tmp_path / "models.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(package, arcname="carried_pkg")
    blob = tar_path.read_bytes()
    size = len(blob) // calls + 1
    names = [f"models.tar.part{i:02d}" for i in range(calls)]
    manifest = "".join(f"part {n}\n" for n in names) + f"sha256 {hashlib.sha256(blob).hexdigest()}\n"
    folders = []
    for i, name in enumerate(names):
        folder = tmp_path / f"call{i}"
        folder.mkdir()
        (folder / name).write_bytes(blob[i * size : (i + 1) * size])
        (folder / "MANIFEST").write_text(manifest)
        folders.append(folder)
    return folders


def test_models_in_parts_are_unpacked_once_every_part_has_arrived(tmp_path):
    first, second = split_tar(tmp_path, 2)
    done = run_suite(tmp_path, "--group", "none", parts=first)
    assert done.returncode == 0, done.stderr
    assert "model parts still missing: models.tar.part01" in done.stderr
    assert not (tmp_path / "site" / "carried_pkg").exists()
    done = run_suite(tmp_path, "--group", "none", parts=second)  # the next call brings the last part
    assert "models unpacked" in done.stderr, done.stderr
    assert (tmp_path / "site" / "carried_pkg" / "__init__.py").read_text().startswith("VALUE = 42")


def test_a_corrupt_part_is_refused(tmp_path):
    (only,) = split_tar(tmp_path, 1)
    part = only / "models.tar.part00"
    part.write_bytes(part.read_bytes()[:-1] + b"x")
    done = run_suite(tmp_path, "--group", "none", parts=only)
    assert "checksum mismatch" in done.stderr
    assert not (tmp_path / "site" / "carried_pkg").exists()


def test_commands_the_budget_cannot_fit_are_skipped_and_recorded(tmp_path):
    done = run_suite(tmp_path, "--group", "throughput", "--budget", "5")
    assert done.returncode == 0, done.stderr
    lines = results(tmp_path)
    assert len(lines) == 4 and all(line["skipped"] == "budget spent" for line in lines)
    assert lines[0]["command"].startswith("python bench/ppo_throughput.py --arch gpt2")


@pytest.mark.slow
def test_smoke_run_records_each_bench_line_and_its_status(tmp_path):
    """Also the smoke test of bench/cpu_budget.py, which the "stages" group runs with --smoke."""
    done = run_suite(tmp_path, "--smoke", "--group", "env,stages")
    assert done.returncode == 0, done.stderr
    lines = results(tmp_path)
    env = next(line for line in lines if "env" in line)
    assert env["env"]["versions"]["torch"] and env["env"]["gpu"] is None
    bench = next(line for line in lines if line.get("bench") == "cpu_budget")
    assert list(bench["presets"]) == ["tiny"]
    tiny = bench["presets"]["tiny"]
    assert tiny["sft_step_s"] > 0 and tiny["generate_16_s"] > 0 and tiny["ppo_step_s"] > 0
    assert tiny["threads"] == 1  # RLHF_LAB_THREADS, as the suite's environment sets it
    assert tiny["mixed_precision"] == "stage default"  # tiny never asks for CPU bf16
    status = next(line for line in lines if line.get("suite") and "cpu_budget" in line.get("command", ""))
    assert status["rc"] == 0 and status["wall_s"] >= 0


def test_lab_times_runs_the_labs_in_the_order_named():
    sys.path.insert(0, str(ROOT / "bench"))
    from lab_times import pick_labs

    assert [p.name[:2] for p in pick_labs(["08", "02", "08"])] == ["08", "02"]
    assert [p.name[:2] for p in pick_labs(None)] == sorted(p.name[:2] for p in pick_labs(None))
    assert pick_labs(["99"]) == []
