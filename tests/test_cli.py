"""The rlhf-lab command: servers are token-protected and bound to loopback unless told otherwise."""

import argparse
import subprocess

import pytest

from rlhf_lab import cli


def _args(**kw):
    base = dict(labs="labs", ip="127.0.0.1", port=8899, token=None, voila=False, open_browser=False)
    return argparse.Namespace(**{**base, **kw})


def test_lab_command_binds_loopback_with_token():
    command = cli.jupyter_command(_args(), token="secret")
    assert "--ip=127.0.0.1" in command
    assert "--IdentityProvider.token=secret" in command
    assert "--no-browser" in command


def test_voila_command_has_token_and_ip():
    command = cli.jupyter_command(_args(voila=True), token="t0k")
    assert command[0].endswith("voila")
    assert "--Voila.token=t0k" in command and "--Voila.ip=127.0.0.1" in command


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
    token = next(a.split("=", 1)[1] for a in seen["command"] if a.startswith("--IdentityProvider.token="))
    assert len(token) >= 24 and token in err.out  # a random token, printed in the URL


def test_serve_on_loopback_does_not_warn(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(subprocess, "call", lambda command, env: 0)
    (tmp_path / "labs").mkdir()
    assert cli.main(["lab", "--labs", str(tmp_path / "labs"), "--token", "abc"]) == 0
    out = capsys.readouterr()
    assert "WARNING" not in out.err and "token=abc" in out.out


def test_missing_labs_folder_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["lab", "--labs", str(tmp_path / "nope")]) == 2
    assert "no labs folder" in capsys.readouterr().err


def test_presets_command_lists_presets(capsys):
    assert cli.main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "smollm2-135m" in out
