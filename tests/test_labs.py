"""The labs: committed without outputs, and each one runs top to bottom on the tiny preset."""

import os
import shutil
from pathlib import Path

import nbformat
import pytest

LABS = Path(__file__).resolve().parent.parent / "labs"
NOTEBOOKS = sorted(LABS.glob("[0-9][0-9]_*.ipynb"))


def test_there_are_labs():
    assert len(NOTEBOOKS) >= 8, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_lab_is_committed_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip outputs"
    assert "widgets" not in nb.metadata, f"{path.name}: widget state must not be stored"
    first_code = next(c.source for c in nb.cells if c.cell_type == "code")
    assert "PRESET" in first_code, f"{path.name}: the first code cell should set PRESET (one switch CPU/GPU)"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_lab_runs_top_to_bottom(path, tmp_path):
    from nbclient import NotebookClient

    work = tmp_path / "labs"
    shutil.copytree(LABS, work, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "*.sqlite*", "runs"))
    nb = nbformat.read(work / path.name, as_version=4)
    env = {"RLHF_LAB_PRESET": "tiny", "RLHF_LAB_QUICK": "1", "RLHF_LAB_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits the test's environment
    try:
        NotebookClient(
            nb,
            timeout=600,
            kernel_name="python3",
            store_widget_state=False,
            resources={"metadata": {"path": str(work)}},
        ).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"
    ]
    assert not errors
