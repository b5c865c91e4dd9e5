"""One validation path for every stage's hyper-parameters: typed, ranged, before anything changes."""

import math

import pytest
import torch

from rlhf_lab.hparams import above, at_least, between
from rlhf_lab.models.tiny import tiny_policy, tiny_reward_model
from rlhf_lab.reward import RewardModelStage
from rlhf_lab.rl import RLStage
from rlhf_lab.stages.dpo import DPOStage
from rlhf_lab.stages.sft import SFTStage

DEMOS = [
    {"prompt": "What is two plus two?", "response": "Two plus two is four."},
    {"prompt": "Name a colour.", "response": "Blue is a colour."},
]
PAIRS = [
    {"prompt": f"Review film {i}.", "chosen": "A great film.", "rejected": "A dull film."} for i in range(4)
]
PROMPTS = ["Write about a cat.", "Write about a dog.", "Write about rain.", "Write about tea."]


def _reward(prompts, responses):
    return [float(len(r)) for r in responses]


BUILDERS = {
    "sft": lambda tok, **kw: SFTStage(tiny_policy(tok), tok, DEMOS, max_length=64, **kw),
    "reward_model": lambda tok, **kw: RewardModelStage(tiny_reward_model(tok), tok, PAIRS, **kw),
    "dpo": lambda tok, **kw: DPOStage(tiny_policy(tok), tok, PAIRS, **kw),
    "rl": lambda tok, **kw: RLStage(
        tiny_policy(tok),
        tok,
        PROMPTS,
        _reward,
        **{"batch_size": 4, "num_minibatches": 1, "max_new_tokens": 4, **kw},
    ),
}
BAD_VALUES = [
    ("learning_rate", math.nan, "finite"),
    ("learning_rate", math.inf, "finite"),
    ("learning_rate", -1.0, r"\[0, inf\)"),
    ("learning_rate", "abc", "must be a number"),
    ("learning_rate", None, "must be a number"),
    ("learning_rate", True, "must be a number"),
    ("batch_size", 0, r"\[1, inf\)"),
    ("batch_size", -3, r"\[1, inf\)"),
    ("batch_size", 2.5, "must be an integer"),
    ("batch_size", "8", "must be an integer"),
]


@pytest.mark.parametrize("kind", list(BUILDERS))
@pytest.mark.parametrize(("field", "value", "match"), BAD_VALUES)
def test_constructor_refuses_bad_values_naming_the_field(tiny_tok, kind, field, value, match):
    with pytest.raises(ValueError, match=match) as info:
        BUILDERS[kind](tiny_tok, **{field: value})
    assert f".{field} " in str(info.value)


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_set_refuses_bad_values_before_anything_changes(tiny_tok, kind):
    stage = BUILDERS[kind](tiny_tok)
    model = getattr(stage, "policy", None) or stage.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config_before = dict(vars(stage.config))
    for field, value, match in BAD_VALUES:
        with pytest.raises(ValueError, match=match):
            stage.set(**{field: value})
    assert vars(stage.config) == config_before
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    stage.set(learning_rate=1e-4, batch_size=2)  # good values still apply
    assert stage.config.learning_rate == 1e-4 and stage.config.batch_size == 2


def test_ranges_print_plainly():
    assert str(at_least(0)) == "[0, inf)" and str(above(0)) == "(0, inf)"
    assert str(between(0, 1, low_open=True)) == "(0, 1]"
    assert (
        0 in at_least(0)
        and 0 not in above(0)
        and 1 in between(0, 1)
        and 1 not in between(0, 1, high_open=True)
    )


def test_an_int_is_a_valid_float(tiny_tok):
    assert BUILDERS["sft"](tiny_tok, learning_rate=0).config.learning_rate == 0


def test_ppo_prompt_longer_than_the_model_says_so(tiny_tok):
    positions = tiny_policy(tiny_tok).config.max_position_embeddings
    long_prompt = " ".join(["word"] * (positions + 50))
    with pytest.raises(ValueError, match="leaves no room") as info:
        RLStage(tiny_policy(tiny_tok), tiny_tok, [long_prompt], _reward, batch_size=1, num_minibatches=1)
    assert "at most -" not in str(info.value)
