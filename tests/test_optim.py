"""rlhf_lab.optim: fused AdamW where the device has the kernel, same maths as the foreach path."""

import torch

from rlhf_lab.optim import adamw, can_fuse, decay_groups


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 1))


def _train(fused: bool) -> list[torch.Tensor]:
    model = _model()
    opt = adamw(decay_groups(model.parameters(), 0.1), lr=1e-2, fused=fused)
    data = torch.randn(32, 8, generator=torch.Generator().manual_seed(1))
    for _ in range(5):
        opt.zero_grad()
        model(data).pow(2).mean().backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


def test_cpu_parameters_get_the_fused_kernel():
    opt = adamw(_model().parameters(), lr=1e-3)
    assert opt.param_groups[0]["fused"] is True


def test_fused_and_foreach_take_the_same_steps():
    for fused, foreach in zip(_train(True), _train(False)):
        assert torch.allclose(fused, foreach, atol=1e-6)


def test_decay_groups_spare_biases_and_norms():
    matrices, vectors = decay_groups(_model().parameters(), 0.1)
    assert matrices["weight_decay"] == 0.1 and all(p.dim() == 2 for p in matrices["params"])
    assert vectors["weight_decay"] == 0.0 and len(vectors["params"]) == 4  # 2 biases + norm weight, bias


def test_unsupported_tensors_fall_back_to_foreach():
    assert not can_fuse([torch.zeros(2, device="meta")])
    assert not can_fuse([torch.zeros(2, dtype=torch.long)])
    assert not can_fuse([])
