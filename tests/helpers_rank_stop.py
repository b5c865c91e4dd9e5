"""One rank of tests/test_rl_ranks_stop.py: `python helpers_rank_stop.py RANK PORT FAULT OUT`.

FAULT says how rank 1 stops at step 2: "reward" (its reward raises), "kl" (the KL limit), "nan"
(a NaN loss). Rank 0 never fails on its own. Each rank writes what it saw to OUT/rank<r>.json, with
the reward's scale fitted at step 1 (on 3 fresh answers per rank, each rank's own samples).
"""

import json
import os
import sys

import torch
import torch.distributed as dist

rank, port, fault, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, RANK=str(rank), WORLD_SIZE="2")
torch.set_num_threads(1)
dist.init_process_group("gloo", rank=rank, world_size=2)

import rlhf_lab.rl.update as rl_update  # noqa: E402
from rlhf_lab.models.tiny import tiny_policy, tiny_tokenizer  # noqa: E402
from rlhf_lab.rl import RLStage  # noqa: E402
from rlhf_lab.rl.distributed import params_sha256  # noqa: E402

faulty = rank == 1
reward_down = False


def reward(prompts, responses):
    if reward_down:
        raise RuntimeError("the reward server is down")
    return [float(len(r)) for r in responses]


tok = tiny_tokenizer()
stage = RLStage(
    tiny_policy(tok, seed=0),
    tok,
    ["Write about a cat.", "Write about a dog."],
    reward,
    batch_size=2,
    num_minibatches=1,
    num_epochs=1,
    max_new_tokens=4,
    seed=rank,
    learning_rate=1e-3,
    normalize_reward=True,
    reward_norm_samples=6,
)
real_loss = rl_update.policy_loss


def nan_loss(*args, **kwargs):
    pg, ratio, logratio = real_loss(*args, **kwargs)
    return pg * float("nan"), ratio, logratio


stage.step(1, progress=False)
reward_down = faulty and fault == "reward"
if faulty and fault == "kl":
    stage.config.kl_limit = -1.0  # any KL is above it
if faulty and fault == "nan":
    rl_update.policy_loss = nan_loss
result = {"rank": rank, "scale": stage.normalizer.state_dict()}
before = params_sha256(stage.policy.parameters())
try:
    stage.step(1, progress=False)
    result["error"] = None
except Exception as exc:
    result["error"] = f"{type(exc).__name__}: {exc}"
result["unchanged"] = params_sha256(stage.policy.parameters()) == before
result["sha"] = before
result["step_count"] = stage.step_count
with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
    json.dump(result, f)
# Leave together: a rank tearing gloo down while the other still uses it can abort with
# "terminate called without an active exception" (seen once in a full-suite run).
dist.barrier()
# Even with the barrier and destroy_process_group(), the faulty rank aborted the same way once more
# (2026-11-27, clean-clone CI, exit -6, nothing else printed): C++ teardown of gloo's threads, not what
# this test is about. Past the barrier no rank talks to the other again and everything this rank reports
# is written above, so it leaves without tearing gloo down.
sys.stdout.flush()
os._exit(0)
