"""Reward-model scores must not depend on batch-mates: GPT-2 shifts positions under left padding."""

import pytest
import torch

from rlhf_lab.attribution import reward_model_scorer
from rlhf_lab.models.tiny import tiny_reward_model
from rlhf_lab.rl.rewards import ModelReward

SHORT = ("Say hi.", "hi")
LONG = ("Write a long review of a film you liked.", "It was wonderful, moving and funny " * 4)


def _alone_and_batched(score):
    alone = score([SHORT[0]], [SHORT[1]])[0]
    batched = score([SHORT[0], LONG[0]], [SHORT[1], LONG[1]])[0]
    return float(alone), float(batched)


def _model_reward(model, tok):
    return ModelReward(model, tok).scores


@pytest.mark.parametrize("make", [_model_reward, reward_model_scorer], ids=["ModelReward", "ui_scorer"])
def test_score_is_the_same_alone_and_batched_with_a_longer_text(make, tiny_tok):
    assert tiny_tok.padding_side == "left"  # the case that used to go wrong
    torch.manual_seed(0)
    model = tiny_reward_model(tiny_tok, seed=0)
    score = make(model, tiny_tok)
    alone, batched = _alone_and_batched(score)
    assert alone == pytest.approx(batched, abs=1e-5)
    assert tiny_tok.padding_side == "left"  # the shared tokenizer is left as it was
