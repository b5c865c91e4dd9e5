"""A LoRA stage's adapter lives inside the lab's policy: the next stage starts from it, folded in."""

import pytest
import torch

from rlhf_lab.errors import StageBusyError, StageError
from rlhf_lab.lora import has_adapter_layers
from rlhf_lab.models.tiny import tiny_policy
from rlhf_lab.notices import LabNotice
from rlhf_lab.rl import RLStage
from rlhf_lab.stages.dpo import DPOStage
from rlhf_lab.stages.sft import SFTStage

DEMOS = [
    {"prompt": "Say hi.", "response": "Hi there, friend!"},
    {"prompt": "Name a colour.", "response": "Blue."},
]
PROMPTS = ["Describe a cat.", "Say hi.", "Name a colour.", "Count to three."]
PAIRS = [{"prompt": "Say hi.", "chosen": "Hi there!", "rejected": "no"}] * 4


def _length_reward(prompts, responses):
    return [len(r) / 10 for r in responses]


def _logits(model, tokenizer):
    ids = tokenizer(["Say hi. Hi there"], return_tensors="pt")
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).logits


@pytest.fixture()
def adapted(tiny_lab):
    """A lab whose policy carries a LoRA SFT adapter that has moved (lora_B starts at zero)."""
    sft = tiny_lab.sft(DEMOS * 4, lora=True, batch_size=4, learning_rate=3e-2)
    sft.step(4, progress=False)
    return tiny_lab, sft, _logits(tiny_lab.policy, tiny_lab.tokenizer)


def test_rl_after_lora_sft_starts_from_the_adapted_model_and_trains_every_weight(adapted):
    lab, sft, sft_logits = adapted
    with sft.model.disable_adapter():
        before = _logits(sft.model, lab.tokenizer)
    assert not torch.allclose(before, sft_logits, atol=1e-3)  # the adapter has moved the model

    with pytest.warns(LabNotice, match="LoRA adapter of sft; it is folded into the weights before this PPO"):
        ppo = lab.ppo(PROMPTS, reward=_length_reward, batch_size=4, max_new_tokens=4)
    assert not has_adapter_layers(lab.policy) and not sft.is_lora
    assert torch.allclose(_logits(lab.policy, lab.tokenizer), sft_logits, atol=1e-5)
    assert torch.allclose(
        _logits(ppo.ref_policy, lab.tokenizer), sft_logits, atol=1e-5
    )  # KL to the SFT model
    mlp = lab.policy.transformer.h[0].mlp.c_fc.weight  # no adapter on it: it trains only as a full weight
    start = mlp.detach().clone()
    ppo.step(1, progress=False)
    assert all(p.requires_grad for p in ppo.policy.parameters()) and not torch.equal(mlp, start)
    moved = mlp.detach().clone()
    sft.step(1, progress=False)  # SFT goes on too, on all weights
    assert not torch.equal(mlp, moved)


def test_rl_with_its_own_adapter_after_lora_sft_keeps_the_sft_model_as_reference(adapted):
    lab, _, sft_logits = adapted
    with pytest.warns(LabNotice, match="with lora=True: a fresh adapter"):
        ppo = lab.ppo(PROMPTS, reward=_length_reward, batch_size=4, max_new_tokens=4, lora=True, lora_r=4)
    trainable = [n for n, p in ppo.policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert ppo.policy.peft_config["default"].r == 4  # a fresh adapter, not SFT's rank-16 one
    ppo.step(2, progress=False)
    with ppo.policy.disable_adapter():  # the reference: the SFT model, not the one from before SFT
        assert torch.allclose(_logits(ppo.policy, lab.tokenizer), sft_logits, atol=1e-5)


def test_snapshots_are_plain_and_restore_folds_an_rl_adapter(adapted):
    lab, _, sft_logits = adapted
    snapshot = lab.snapshot("sft")
    assert not has_adapter_layers(snapshot) and has_adapter_layers(lab.policy)
    assert torch.allclose(_logits(snapshot, lab.tokenizer), sft_logits, atol=1e-5)
    with pytest.warns(LabNotice):
        ppo = lab.ppo(PROMPTS, reward=_length_reward, batch_size=4, max_new_tokens=4, lora=True)
    assert ppo.ref_policy is None  # LoRA: its reference is the adapter switched off
    ppo.step(1, progress=False)
    with pytest.warns(
        LabNotice, match="before restoring 'sft', whose weights then replace them. ppo is finished"
    ):
        lab.restore("sft")
    assert not has_adapter_layers(lab.policy)
    assert torch.allclose(_logits(lab.policy, lab.tokenizer), sft_logits, atol=1e-5)
    with pytest.raises(StageError, match="was released"):
        ppo.step(1, progress=False)  # its adapter is in the weights now: stepping it would train nothing
    assert len(ppo.history) == 1


def test_a_running_stage_keeps_its_adapter_until_stopped(adapted):
    lab, _, _ = adapted
    with pytest.warns(LabNotice):
        ppo = lab.ppo(PROMPTS, reward=_length_reward, batch_size=4, max_new_tokens=4, lora=True)
    ppo.run(steps=10_000)
    ppo.pause()
    try:
        with pytest.raises(StageBusyError, match="still running with its LoRA adapter"):
            lab.dpo(PAIRS)
        assert has_adapter_layers(lab.policy)  # nothing was folded
    finally:
        ppo.stop()
    with pytest.warns(LabNotice, match="before this DPO stage"):
        dpo = lab.dpo(PAIRS)
    assert all(p.requires_grad for p in dpo.policy.parameters())


def test_a_stage_built_by_hand_on_a_policy_with_another_stages_adapter_is_refused(tiny_tok):
    policy = tiny_policy(tiny_tok, seed=0)
    SFTStage(policy, tiny_tok, DEMOS, lora=True)
    with pytest.raises(ValueError, match=r"fold it in first \(sft.merge\(\)\), or create the rl stage"):
        RLStage(policy, tiny_tok, PROMPTS, _length_reward, batch_size=4, max_new_tokens=4)
    with pytest.raises(ValueError, match="lab.dpo"):
        DPOStage(policy, tiny_tok, PAIRS)
