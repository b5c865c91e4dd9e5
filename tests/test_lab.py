"""Lab conveniences: reproducible seeds, snapshots and restore, ensembles."""

import pytest
import torch

from rlhf_lab import Lab


def test_same_seed_same_numbers(tmp_path):
    demos = [{"prompt": "Say hi.", "response": "Hi there, friend!"}] * 8
    losses = []
    for run in range(2):
        torch.manual_seed(1234 + run)  # whatever the kernel did before
        lab = Lab.from_preset("tiny", seed=3, store=tmp_path / f"{run}.sqlite")
        losses.append([r["loss/sft"] for r in lab.sft(demos, batch_size=4).step(3)])
    assert losses[0] == losses[1]


def test_restore_puts_the_snapshot_back(tiny_lab):
    snapshot = tiny_lab.snapshot("sft")
    tiny_lab.sft([{"prompt": "Say hi.", "response": "Hi!"}] * 4, batch_size=4).step(2)
    assert any(not torch.equal(a, b) for a, b in zip(tiny_lab.policy.parameters(), snapshot.parameters()))
    policy = tiny_lab.restore("sft")
    assert policy is tiny_lab.policy
    assert all(torch.equal(a, b) for a, b in zip(tiny_lab.policy.parameters(), snapshot.parameters()))
    with pytest.raises(KeyError, match="snapshot"):
        tiny_lab.restore("nope")


def test_conservative_ensemble_from_the_lab(tiny_lab):
    pairs = [{"prompt": f"p{i}", "chosen": "great answer", "rejected": "poor answer"} for i in range(12)]
    ensemble = tiny_lab.reward_ensemble(2, pairs, reduce="conservative", k=1.0)
    scores = ensemble(["p0", "p1"], ["great answer", "poor answer"])
    expected = ensemble.mean(["p0", "p1"], ["great answer", "poor answer"]) - ensemble.std(
        ["p0", "p1"], ["great answer", "poor answer"]
    )
    assert torch.allclose(scores, expected)
