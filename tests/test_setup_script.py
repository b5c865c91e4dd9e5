"""scripts/setup_env.sh refuses an old Python or a Python without venv before downloading anything."""

import os
import stat
import subprocess
from pathlib import Path

import pytest

SETUP = Path(__file__).resolve().parent.parent / "scripts" / "setup_env.sh"


def fake_python(tmp_path, version, has_venv=True):
    """A stand-in `python3` answering the version checks (and, optionally, failing `import venv`)."""
    path = tmp_path / "python3"
    major, minor = version
    path.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *"import venv"*) exit {0 if has_venv else 1};; '
        f'*version_info*">="*) exit {0 if (major, minor) >= (3, 10) else 1};; '
        f'*python_version*) echo {major}.{minor}.0;; *"version_info[0]"*) echo {major}.{minor};; esac\n'
        f'[ "$1" = "-m" ] && [ "$2" = venv ] && touch "$TMPDIR/venv-created"\nexit 0\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def run_setup(tmp_path, python):
    env = {
        **os.environ,
        "RLHF_LAB_VENV": str(tmp_path / "venv"),
        "RLHF_LAB_PYTHON": str(python),
        "TMPDIR": str(tmp_path),
    }
    return subprocess.run(["bash", str(SETUP)], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("version", "has_venv", "message"),
    [((3, 9), True, "needs Python 3.10 or newer"), ((3, 11), False, "python3.11-venv")],
)
def test_a_python_that_cannot_work_is_refused_with_the_fix(tmp_path, version, has_venv, message):
    result = run_setup(tmp_path, fake_python(tmp_path, version, has_venv))
    assert result.returncode != 0
    assert message in result.stderr and "RLHF_LAB_PYTHON" in result.stderr or "apt install" in result.stderr
    assert not (tmp_path / "venv-created").exists()  # nothing was created or downloaded


def test_a_missing_python_is_explained(tmp_path):
    result = run_setup(tmp_path, tmp_path / "no-such-python")
    assert result.returncode != 0 and "Install Python 3.10+" in result.stderr
