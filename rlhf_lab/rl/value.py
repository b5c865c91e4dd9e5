"""The PPO value function: a head on the policy's own hidden states, or a separate value model.

    >>> head = ValueHead(policy.config.hidden_size)         # shared backbone: one forward, one backward
    >>> values = head(hidden_states)                        # (N, T, H) -> (N, T)
    >>> critic = SeparateValueModel(copy.deepcopy(policy))  # own backbone, own head
    >>> values = critic(input_ids, attention_mask, position_ids, response_length)

The value of response position t is read from the hidden state that predicts token t, i.e. the
state before the action, which is where the policy's logits for token t come from as well.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def hidden_size(model: nn.Module) -> int:
    config = model.config
    size = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None)
    if size is None:
        raise ValueError(f"Cannot find the hidden size of {type(model).__name__} for a value head.")
    return int(size)


class ValueHead(nn.Module):
    """Linear read-out of a scalar value; zero-initialised so every run starts from V = 0."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # Values are regression targets: keep the read-out in float32 even under bf16 autocast.
        with torch.autocast(device_type=hidden_states.device.type, enabled=False):
            return self.linear(hidden_states.to(self.linear.weight.dtype)).squeeze(-1)


class SeparateValueModel(nn.Module):
    """A causal LM backbone (usually a copy of the policy) with its own value head."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = ValueHead(hidden_size(backbone))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        response_length: int,
    ) -> torch.Tensor:
        out = self.backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_hidden_states=True,
            logits_to_keep=1,  # the LM head is not needed; skip its (N, T, V) output
            use_cache=False,
        )
        hidden = out.hidden_states[-1][:, -(response_length + 1) : -1]
        return self.head(hidden)


def param_groups(
    policy: nn.Module, value_head: nn.Module | None, value_model: nn.Module | None, config: Any
) -> list:
    """AdamW groups: the policy (and a separate value model's backbone) at `learning_rate`; the value
    head, trained from zero, at its own larger rate (`config.value_lr`)."""
    policy_params = [p for p in policy.parameters() if p.requires_grad]
    head = value_head if value_model is None else value_model.head
    if value_model is not None:
        policy_params += list(value_model.backbone.parameters())
    groups = [{"params": policy_params}]
    if head is not None:
        groups.append({"params": list(head.parameters()), "lr": config.value_lr})
    return groups
