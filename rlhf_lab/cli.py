"""The `rlhf-lab` command.

rlhf-lab lab                       JupyterLab on labs/ (127.0.0.1, token on)
rlhf-lab demo --preset tiny        the whole pipeline headless, with a short report
rlhf-lab serve --store shared.sqlite [--voila] [--ip 0.0.0.0]   workshop mode
rlhf-lab presets                   list the presets
rlhf-lab train CONFIG.yaml         headless SFT / reward model / RL from a YAML file (rlhf_lab.headless);
                                   data-parallel under `accelerate launch --multi_gpu --num_processes N -m rlhf_lab.cli train ...`
rlhf-lab export-trl CONFIG.yaml --out DIR   the same recipe as TRL 1.16 datasets, configs and a script
                                   (rlhf_lab.trl_recipe) for `accelerate launch DIR/train_trl.py`
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
PRESET_NAMES = ("tiny", "smollm2-135m")  # rlhf_lab.models.presets.PRESETS (not imported: it loads torch)
TASK_NAMES = ("positive_review", "helpful_harmless")  # rlhf_lab.bundled.TASKS


def _labs_dir(given: str | None) -> Path:
    if given:
        return Path(given).resolve()
    here = Path.cwd() / "labs"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parent.parent / "labs"


def _is_loopback(ip: str) -> bool:
    if ip == "localhost":
        return True
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def jupyter_command(args: argparse.Namespace) -> list[str]:
    """The server command line: loopback unless --ip says otherwise, and no token on it.

    The token goes to the server in its environment (`server_env`), never on the command line, which
    any local user can read in /proc/<pid>/cmdline. jupyter_server reads `JUPYTER_TOKEN` (its
    IdentityProvider.token default); Voila does too once `auto_token` is on and no token is given.
    """
    bin_dir = Path(sys.executable).parent
    if getattr(args, "voila", False):
        return [
            str(bin_dir / "voila"),
            "--no-browser",
            f"--port={args.port}",
            f"--Voila.ip={args.ip}",
            f"--Voila.root_dir={args.labs}",
            "--Voila.auto_token=True",
            "--show_tracebacks=False",
        ]
    command = [
        str(bin_dir / "jupyter-lab"),
        f"--ip={args.ip}",
        f"--port={args.port}",
        f"--ServerApp.root_dir={args.labs}",
        "--ServerApp.port_retries=0",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if not getattr(args, "open_browser", False):
        command.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--ServerApp.allow_root=True")
    return command


def server_env(token: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment: `base` (default os.environ) with the token in JUPYTER_TOKEN.

    /proc/<pid>/environ is readable by the same user only, unlike the command line.
    """
    env = dict(os.environ if base is None else base)
    env["JUPYTER_TOKEN"] = token
    return env


def open_url(ip: str, port: int, path: str, token: str) -> str:
    """A URL a person can open: localhost on loopback, this host's name on 0.0.0.0 / ::."""
    if _is_loopback(ip):
        host = "localhost"
    elif ip in ("0.0.0.0", "::", ""):
        host = socket.gethostname() or LOOPBACK
    else:
        host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{port}/{path}?token={token}"


def _serve(args: argparse.Namespace, workshop: bool) -> int:
    args.labs = _labs_dir(args.labs)
    if not args.labs.is_dir():
        print(f"error: no labs folder at {args.labs}", file=sys.stderr)
        return 2
    token = args.token or os.environ.get("RLHF_LAB_TOKEN") or secrets.token_urlsafe(24)
    if not token:
        print("error: an empty token is not allowed; the server always requires one", file=sys.stderr)
        return 2
    if not _is_loopback(args.ip):
        print(
            f"WARNING: listening on {args.ip}, reachable from other machines. Anyone with the token can run "
            "code as this user. Use this only on a network you trust, and share the token privately.",
            file=sys.stderr,
        )
    env = server_env(token)
    if workshop:
        store = Path(args.store).resolve()
        store.parent.mkdir(parents=True, exist_ok=True)
        env["RLHF_LAB_STORE"] = str(store)  # every participant's Lab labels into this one file
        print(f"Shared preference store: {store}")
    path = "" if args.voila else "lab"
    print(f"Open: {open_url(args.ip, args.port, path, token)}", flush=True)
    if not _is_loopback(args.ip):
        print(f"  (on this machine: {open_url(LOOPBACK, args.port, path, token)})", flush=True)
    return subprocess.call(jupyter_command(args), env=env)


def _demo(args: argparse.Namespace) -> int:
    from rlhf_lab.demo import run_demo
    from rlhf_lab.progress import silenced

    def say(line: str) -> None:  # on stderr, so that `--json > report.json` stays one clean document
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    with silenced() if args.quiet else contextlib.nullcontext():
        report = run_demo(
            preset=args.preset,
            task=args.task,
            sft_steps=args.sft_steps,
            label_pairs=args.pairs,
            ppo_steps=args.ppo_steps,
            seed=args.seed,
            workdir=args.workdir,
            progress=None,  # a bar once a phase has run a couple of seconds (none at all with --quiet)
            say=say,
        )
    print(json.dumps(report, indent=2) if args.json else report["text"])
    return 0


def _config(path: str) -> dict[str, Any] | None:
    """The checked YAML config, or None after printing why it cannot be used."""
    import yaml

    from rlhf_lab.errors import ConfigError
    from rlhf_lab.headless_config import load_config

    try:
        return load_config(path)
    except (OSError, ConfigError, yaml.YAMLError) as error:
        print(f"rlhf-lab: error: {path}: {error}", file=sys.stderr)
        return None


def _train(args: argparse.Namespace) -> int:
    from rlhf_lab.headless import train

    config = _config(args.config)
    if config is None:
        return 2
    if args.output_dir:
        config["output_dir"] = args.output_dir
    train(config, progress=not args.quiet, resume=args.resume)  # prints the one-line JSON summary (rank 0)
    return 0


def _export_trl(args: argparse.Namespace) -> int:
    from rlhf_lab.trl_recipe import export_trl

    config = _config(args.config)
    if config is None:
        return 2
    recipe = export_trl(config, args.out)
    stages = ", ".join(f"{s['kind']} ({s['trainer']})" for s in recipe["stages"])
    print(f"Wrote {args.out}: {stages}. Run: accelerate launch {Path(args.out) / 'train_trl.py'}")
    if recipe["not_carried"]:  # said here, not only in the README: a setting must not vanish unseen
        print(
            f"Not carried over to TRL ({len(recipe['not_carried'])}; also in {Path(args.out) / 'README.md'}):"
        )
        for where, why in recipe["not_carried"].items():
            print(f"  {where}: {why}")
    return 0


def _presets(_: argparse.Namespace) -> int:
    from rlhf_lab.models.presets import PRESETS

    for preset in PRESETS.values():
        print(f"{preset.name:14s} {preset.description}")
    return 0


def _count(text: str) -> int:
    """argparse type: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlhf-lab", description="RLHF, step by step, in a notebook.")
    sub = parser.add_subparsers(dest="command", required=True)

    def server_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--labs", help="folder of notebooks (default: ./labs)")
        p.add_argument("--ip", default=LOOPBACK, help="interface to listen on (default 127.0.0.1)")
        p.add_argument("--port", type=int, default=8888)
        p.add_argument(
            "--token",
            help="access token (default: $RLHF_LAB_TOKEN or a random one, printed); prefer the environment "
            "variable: a command line is visible to every local user",
        )
        p.add_argument("--voila", action="store_true", help="serve the labs as Voila apps")

    lab = sub.add_parser("lab", help="open JupyterLab on the labs")
    server_args(lab)
    lab.add_argument("--open-browser", action="store_true")
    lab.set_defaults(func=lambda a: _serve(a, workshop=False))

    serve = sub.add_parser("serve", help="workshop mode: many participants, one shared preference store")
    server_args(serve)
    serve.add_argument("--store", default="workshop/labels.sqlite", help="shared preference store file")
    serve.set_defaults(func=lambda a: _serve(a, workshop=True))

    demo = sub.add_parser(
        "demo",
        help="the pipeline headless: SFT -> reward model (bundled pairs + simulated labels) -> RL, "
        "then a report judged by the task's gold judge",
    )
    demo.add_argument("--preset", default="tiny", choices=PRESET_NAMES, help="model preset (default tiny)")
    demo.add_argument("--task", default="positive_review", choices=TASK_NAMES, help="bundled task")
    demo.add_argument("--sft-steps", type=_count, default=None, help="SFT steps (default: the preset's)")
    demo.add_argument(
        "--pairs",
        type=_count,
        default=None,
        help="pairs of the policy's samples labelled by the simulated raters",
    )
    demo.add_argument("--ppo-steps", type=_count, default=None, help="RL steps, whatever the estimator")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--workdir", default=None, help="where the store and checkpoints go (default: temp)")
    demo.add_argument("--json", action="store_true", help="print the report as JSON")
    demo.add_argument("--quiet", action="store_true", help="no phase lines or progress bars (stderr)")
    demo.set_defaults(func=_demo)

    train = sub.add_parser(
        "train", help="headless training from a YAML config (accelerate launch for N ranks)"
    )
    train.add_argument(
        "config",
        help="YAML file: preset, task, sft/reward_model/rl sections, output_dir; data files named with a "
        "relative path are read from the file's folder",
    )
    train.add_argument("--output-dir", default=None, help="overrides the config's output_dir")
    train.add_argument("--quiet", action="store_true", help="no progress bars (stderr)")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in output_dir from its checkpoints (the same config; steps may grow)",
    )
    train.set_defaults(func=_train)

    export_trl = sub.add_parser(
        "export-trl", help="write the config's recipe as TRL 1.16 datasets, configs and a train_trl.py"
    )
    export_trl.add_argument(
        "config", help="the YAML file `rlhf-lab train` reads (rl.estimator: grpo or rloo)"
    )
    export_trl.add_argument("--out", required=True, help="folder to write")
    export_trl.set_defaults(func=_export_trl)

    presets = sub.add_parser("presets", help="list the model presets")
    presets.set_defaults(func=_presets)
    return parser


def main(argv: list[str] | None = None) -> int:
    from rlhf_lab.errors import RLHFLabError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except RLHFLabError as error:  # raised on purpose, with a message written for a person
        print(f"rlhf-lab: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
