"""Multi-process RL: a rank that stops (reward error, KL limit, NaN loss) stops the others at the same
step boundary, before any rank changes its weights, instead of leaving them waiting at an all-reduce.
The ranks also share one reward scale, fitted on every rank's samples."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

HELPER = Path(__file__).with_name("helpers_rank_stop.py")


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["reward", "kl", "nan"])
def test_a_rank_that_stops_stops_the_other(tmp_path, fault):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    procs = [
        subprocess.Popen(
            [sys.executable, str(HELPER), str(r), port, fault, str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in (0, 1)
    ]
    try:
        outputs = [p.communicate(timeout=150)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()  # a rank left waiting at an all-reduce: the defect this test is about
    assert [p.returncode for p in procs] == [0, 0], outputs
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    expected = {"reward": "the reward server is down", "kl": "kl_limit", "nan": "nan"}[fault]
    assert expected in ranks[1]["error"].lower()
    assert (
        ranks[0]["error"].startswith("OtherRankStopped") and "rank 1 stopped at step 2" in ranks[0]["error"]
    )
    assert all(r["unchanged"] and r["step_count"] == 1 for r in ranks)
    assert ranks[0]["sha"] == ranks[1]["sha"]  # still identical after the stop
    assert ranks[0]["scale"] == ranks[1]["scale"]  # one reward scale, fitted on both ranks' samples
