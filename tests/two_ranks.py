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
