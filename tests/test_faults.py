"""Faults a workshop meets: a kernel killed mid-PPO, a reward function that raises."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from rlhf_lab.errors import StageError

CHILD = textwrap.dedent(
    """
    import sys, torch
    torch.set_num_threads(1)
    from rlhf_lab import Lab
    from rlhf_lab.rl import RLStage

    def reward(prompts, responses):
        return [float(r.count("e")) for r in responses]

    lab = Lab.from_preset("tiny")
    stage = lab.ppo(["Write a review.", "Say something nice."] * 4, reward=reward, batch_size=4,
                    max_new_tokens=8, num_minibatches=2, checkpoint_every=2, checkpoint_dir=sys.argv[1])
    while True:
        row = stage.step()[0]
        print(row["step"], flush=True)
    """
)


def reward(prompts, responses):
    return [float(r.count("e")) for r in responses]


@pytest.mark.slow
def test_kill_mid_ppo_resumes_from_last_checkpoint(tmp_path):
    from rlhf_lab.rl import RLStage

    ckpt = tmp_path / "auto"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(ckpt)], stdout=subprocess.PIPE, text=True)
    steps = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        steps.append(int(line))
        if len(steps) >= 5:
            os.kill(child.pid, signal.SIGKILL)  # mid-run: step 6 may be half done, a save may be under way
            break
    child.wait(30)
    assert len(steps) >= 5, "the child never got going"

    stage = RLStage.load(ckpt, reward=reward)
    assert stage.step_count in (4, 6)  # the last automatic checkpoint (every 2 steps)
    resumed_at = stage.step_count
    row = stage.step()[0]
    assert row["step"] == resumed_at + 1
    assert list(stage.history["step"]) == list(range(1, resumed_at + 2))  # the curve continues


def test_reward_function_error_names_the_sample_and_pauses(tiny_lab):
    def broken(prompts, responses):
        return [1.0 / (len(r) > 10_000) for r in responses]  # ZeroDivisionError on every sample

    stage = tiny_lab.ppo(
        ["Write a review."] * 4, reward=broken, batch_size=4, max_new_tokens=4, num_minibatches=2
    )
    stage.run(steps=3)
    stage._thread.join(60)
    assert stage.status == "error"
    with pytest.raises(StageError) as info:
        stage.step()
    message = str(info.value)
    assert "Write a review." in message  # the sample that caused it
    assert stage.step_count == 0  # nothing was applied
