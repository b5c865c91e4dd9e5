"""Small helpers on models that every layer may use (no Lab, no widgets).

>>> from rlhf_lab.models.helpers import freeze
>>> reference = freeze(copy.deepcopy(policy))
"""

from __future__ import annotations

import torch


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    """Eval mode and no gradients: a reference that provably never changes."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model
