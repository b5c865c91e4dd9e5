"""The SFT stage on the tiny preset."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from rlhf_lab.chat import format_prompt
from rlhf_lab.demonstrations import DemoError
from rlhf_lab.metrics import is_known
from rlhf_lab.models.tiny import tiny_policy
from rlhf_lab.stages.sft import IGNORE_INDEX, SFTConfig, SFTStage

DEMOS = [
    {"prompt": "What is two plus two?", "response": "Two plus two is four."},
    {"prompt": "How many days are in a week?", "response": "There are seven days in a week."},
    {"prompt": "What is the capital of France?", "response": "The capital of France is Paris."},
    {"prompt": "Why is the sky blue?", "response": "Blue light scatters the most."},
    {"prompt": "Explain what a noun is.", "response": "A noun is a word that names a thing."},
    {"prompt": "How do I make a cup of tea?", "response": "Boil water and pour it over the tea bag."},
]


def make_stage(tok, **overrides):
    settings = {"learning_rate": 3e-3, "batch_size": 4, "max_length": 64, **overrides}
    return SFTStage(tiny_policy(tok, seed=0), tok, DEMOS, **settings)


def test_loss_falls_and_metrics_are_in_the_vocabulary(tiny_tok):
    torch.manual_seed(0)
    stage = make_stage(tiny_tok)
    before = stage.evaluate()
    rows = stage.step(30, progress=False)
    after = stage.evaluate()
    assert after < 0.5 * before
    assert rows[-1]["loss/sft"] < 0.5 * rows[0]["loss/sft"]
    for key in rows[-1]:
        assert is_known(key), key
    assert rows[-1]["train/epoch"] == pytest.approx(30 * 4 / len(DEMOS))
    assert all(r["train/tokens"] > 0 for r in rows)


def test_bf16_autocast_still_learns(tiny_tok):
    torch.manual_seed(0)
    stage = make_stage(tiny_tok, mixed_precision="bf16")
    fp32 = make_stage(tiny_tok).evaluate()
    before = stage.evaluate()
    assert before == pytest.approx(fp32, rel=0.02) and before != fp32  # bf16 rounding, not fp32
    stage.step(30, progress=False)
    assert stage.evaluate() < 0.5 * before


def test_labels_mask_prompt_and_padding(tiny_tok):
    stage = make_stage(tiny_tok)
    batch = stage.encode_batch([0, 1])
    for row, demo in enumerate(DEMOS[:2]):
        n_prompt = len(
            tiny_tok(format_prompt(tiny_tok, demo["prompt"]), add_special_tokens=False)["input_ids"]
        )
        length = int(batch["attention_mask"][row].sum())
        labels, ids = batch["labels"][row], batch["input_ids"][row]
        assert (labels[:n_prompt] == IGNORE_INDEX).all()
        assert torch.equal(labels[n_prompt:length], ids[n_prompt:length])  # the response is learnt
        assert (labels[length:] == IGNORE_INDEX).all()  # right padding is not
        assert ids[length - 1] == tiny_tok.eos_token_id  # ... and the model learns to stop
        response = tiny_tok.decode(ids[n_prompt:length], skip_special_tokens=True)
        assert response == demo["response"]


def test_data_order_is_seeded_and_epoch_aware(tiny_tok):
    a, b = make_stage(tiny_tok, seed=3), make_stage(tiny_tok, seed=3)
    first_epoch = a._next_indices(len(DEMOS))
    assert sorted(first_epoch) == list(range(len(DEMOS)))  # every demo once per epoch
    assert b._next_indices(len(DEMOS)) == first_epoch
    assert make_stage(tiny_tok, seed=4)._next_indices(len(DEMOS)) != first_epoch
    a.samples_seen = len(DEMOS)
    second_epoch = a._next_indices(len(DEMOS))
    assert sorted(second_epoch) == list(range(len(DEMOS))) and second_epoch != first_epoch


def test_batch_size_and_learning_rate_change_on_next_step(tiny_tok):
    stage = make_stage(tiny_tok, warmup_steps=4)
    rows = stage.step(2, progress=False)
    assert [r["train/learning_rate"] for r in rows] == pytest.approx([3e-3 / 4, 3e-3 / 2])
    stage.set(batch_size=2, learning_rate=1e-3)
    stage.step(1, progress=False)
    assert stage.samples_seen == 4 + 4 + 2
    assert stage.history["train/learning_rate"].iloc[-1] == pytest.approx(1e-3 * 3 / 4)
    with pytest.raises(ValueError, match="changeable"):
        stage.set(max_length=10)


def test_bad_demos_are_rejected_with_the_row(tiny_tok):
    with pytest.raises(DemoError, match="row 1: missing column 'response'"):
        SFTStage(tiny_policy(tiny_tok), tiny_tok, [DEMOS[0], {"prompt": "x", "reply": "y"}])
    too_long = [DEMOS[0], DEMOS[1], {"prompt": "word " * 200, "response": "ok"}]
    with pytest.raises(DemoError, match="row 2: the prompt alone is .* max_length=64"):
        SFTStage(tiny_policy(tiny_tok), tiny_tok, too_long, max_length=64)
    with pytest.raises(TypeError, match="Unknown SFTConfig field"):
        SFTStage(tiny_policy(tiny_tok), tiny_tok, DEMOS, learning_rat=1.0)


def test_long_responses_are_cut_to_max_length(tiny_tok):
    stage = make_stage(tiny_tok, max_length=24)
    assert max(len(ids) for ids, _ in stage.examples) <= 24


def test_config_object_is_copied(tiny_tok):
    config = SFTConfig(learning_rate=1e-3)
    stage = SFTStage(tiny_policy(tiny_tok), tiny_tok, DEMOS, config, batch_size=2)
    stage.set(learning_rate=5e-4)
    assert config.learning_rate == 1e-3 and config.batch_size == 8
    assert stage.config.batch_size == 2


def test_lora_wrapping_and_loading_show_no_upstream_deprecation_noise(tiny_tok, tmp_path):
    import warnings

    from rlhf_lab.lora import load_lora, save_base, wrap_lora

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        policy = wrap_lora(tiny_policy(tiny_tok, seed=0), r=4, alpha=8)
        save_base(policy, tmp_path / "base")
        policy.save_pretrained(tmp_path / "adapter")
        load_lora(tmp_path / "base", tmp_path / "adapter")
    assert not [w for w in caught if "is_gradient_checkpointing" in str(w.message)]


def test_lora_trains_the_adapter_only_and_merges(tiny_tok, tmp_path):
    torch.manual_seed(0)
    policy = tiny_policy(tiny_tok, seed=0)
    frozen = {k: v.clone() for k, v in policy.state_dict().items()}
    stage = SFTStage(
        policy, tiny_tok, DEMOS, learning_rate=1e-2, batch_size=4, lora=True, lora_target_modules=["c_attn"]
    )
    trainable = [n for n, p in stage.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    before = stage.evaluate()
    stage.step(30, progress=False)
    # Adapting attention alone of a random tiny model moves the loss less than full fine-tuning.
    assert stage.evaluate() < before - 0.25
    base_now = {
        k.replace("base_layer.", ""): v for k, v in stage.policy.state_dict().items() if "lora_" not in k
    }
    assert all(torch.equal(base_now[k], v) for k, v in frozen.items())  # the base never moved

    stage.save(tmp_path / "lora")
    policy_dir = tmp_path / "lora" / "models" / "policy"
    assert not (policy_dir / "model.safetensors").exists()
    with safe_open(policy_dir / "adapter_model.safetensors", "pt") as f:
        keys = list(f.keys())
    assert keys and all("lora_" in k for k in keys)

    stage.model.eval()
    ids = stage.encode_batch([0, 1])
    with torch.no_grad():
        adapted = stage.model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).logits
        merged = stage.merge()
        assert type(merged).__name__ == "GPT2LMHeadModel" and merged is policy  # merged in place
        plain = merged(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).logits
    assert torch.allclose(adapted, plain, atol=1e-4)
    assert not stage.is_lora and stage.config.lora is False

    resumed = SFTStage.load(tmp_path / "lora")
    assert resumed.is_lora and resumed.step_count == 30
    assert resumed.evaluate() == pytest.approx(stage.evaluate(), rel=1e-4)
    mlp = policy.transformer.h[0].mlp.c_fc.weight  # had no adapter: after merge() every weight trains
    start = mlp.detach().clone()
    stage.step(1, progress=False)
    assert not torch.equal(mlp, start)


def test_lora_checkpoint_without_base_needs_the_base(tiny_tok, tmp_path):
    stage = SFTStage(
        tiny_policy(tiny_tok, seed=0), tiny_tok, DEMOS, lora=True, lora_save_base=False, learning_rate=1e-2
    )
    stage.step(3, progress=False)
    stage.save(tmp_path / "small")
    assert not (tmp_path / "small" / "models" / "base").exists()
    with pytest.raises(FileNotFoundError, match="policy=load_policy"):
        SFTStage.load(tmp_path / "small")
    resumed = SFTStage.load(tmp_path / "small", policy=tiny_policy(tiny_tok, seed=0))
    assert resumed.evaluate() == pytest.approx(stage.evaluate(), rel=1e-4)


RESUME_SCRIPT = """
import json, sys, torch
torch.set_num_threads(1)
from rlhf_lab.stages.sft import SFTStage
stage = SFTStage.load(sys.argv[1])
rows = stage.step(3, progress=False)
print(json.dumps([[r["step"], r["loss/sft"]] for r in rows]))
"""


@pytest.mark.slow
def test_resume_in_a_new_process_matches_an_uninterrupted_run(tiny_tok, tmp_path):
    torch.manual_seed(0)
    stage = make_stage(tiny_tok, warmup_steps=8)  # warm-up: the schedule must resume too
    stage.step(5, progress=False)
    stage.save(tmp_path / "ckpt")
    expected = [[r["step"], r["loss/sft"]] for r in stage.step(3, progress=False)]

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run(
        [sys.executable, "-c", RESUME_SCRIPT, str(tmp_path / "ckpt")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert [s for s, _ in got] == [6, 7, 8]
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in expected], rel=1e-4)


def test_save_load_in_process_keeps_history_demos_and_position(tiny_tok, tmp_path):
    torch.manual_seed(0)
    stage = make_stage(tiny_tok)
    stage.step(4, progress=False)
    stage.save(tmp_path / "ckpt")
    expected = stage.step(1, progress=False)[0]["loss/sft"]
    assert (tmp_path / "ckpt" / "demos.jsonl").read_text().count("\n") == len(DEMOS)
    assert (tmp_path / "ckpt" / "models" / "policy" / "model.safetensors").is_file()
    resumed = SFTStage.load(tmp_path / "ckpt")  # restores the RNG (dropout) as it was at save
    assert resumed.samples_seen == 16 and len(resumed.history) == 4
    assert resumed.config.learning_rate == 3e-3
    assert resumed.step(1, progress=False)[0]["loss/sft"] == pytest.approx(expected, rel=1e-4)


def test_sample_and_evaluate_on_other_demos(tiny_tok):
    stage = make_stage(tiny_tok)
    out = stage.sample(["What is two plus two?"], max_new_tokens=5, seed=0)
    assert len(out) == 1 and isinstance(out[0], str)
    assert stage.evaluate([{"prompt": "Hi?", "response": "Hello."}]) > 0


def test_lab_factory_trains_the_lab_policy_in_place(tiny_lab):
    stage = tiny_lab.sft(DEMOS, batch_size=2)
    assert stage.model is tiny_lab.policy and stage.config.learning_rate == 3e-3
    before = {k: v.clone() for k, v in tiny_lab.policy.state_dict().items()}
    stage.step(2, progress=False)
    assert any(not torch.equal(before[k], v) for k, v in tiny_lab.policy.state_dict().items())
    assert stage.clock is tiny_lab.clock and tiny_lab.clock.value == 2
