"""`rlhf-lab train` under `accelerate launch` with 2 CPU processes (gloo), as the multi-rank tests run it."""

import os
import subprocess
import sys
from pathlib import Path


def train_on_two_ranks(config_path, cwd, *extra: str, timeout: int = 180) -> subprocess.CompletedProcess:
    """Run `rlhf-lab train CONFIG [extra...]` on 2 CPU ranks; returns the finished process (text output)."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    command = [
        str(Path(sys.executable).parent / "accelerate"),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
    ]
    command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    command += ["--main_process_port", "0", "-m", "rlhf_lab.cli", "train", str(config_path), *extra]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def why_it_failed(done: subprocess.CompletedProcess, tail: int = 2000) -> str:
    """What a failed two-rank run printed that says why: each rank's first traceback (torchrun prefixes
    every line with "[rankN]: ") and the end of stderr. The end alone shows only the rank that the
    crashed one took down ("Connection closed by peer"), not the crash itself."""
    tracebacks: dict[str, list[str]] = {}
    finished: set[str] = set()
    for line in done.stderr.splitlines():
        prefix, found, rest = line.partition("]: ")
        if not (found and prefix.startswith("[rank")) or prefix in finished:
            continue
        tracebacks.setdefault(prefix, []).append(line)
        name = rest.split(":", 1)[0]
        if not rest.startswith(" ") and name.endswith(("Error", "Exception", "Stopped")):
            finished.add(prefix)  # the exception line ends this rank's first traceback
    firsts = ["\n".join(lines[-40:]) for lines in tracebacks.values()]
    return "\n\n".join(firsts + ["--- end of stderr ---\n" + done.stderr[-tail:]])
