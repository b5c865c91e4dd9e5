"""DPOStage on the tiny preset: the loss math, learning, the frozen reference, checkpoints, errors."""

import json
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from rlhf_lab.metrics import is_known
from rlhf_lab.models.tiny import tiny_policy
from rlhf_lab.stages.dpo import DPOConfig, DPOStage, dpo_loss

GOOD = ["great", "lovely", "wonderful", "fun", "brilliant", "superb"]
BAD = ["awful", "boring", "terrible", "dull", "bad", "poor"]


def review_pairs(n, kind="film", offset=0):
    """Synthetic preferences: a review with a positive word beats one with a negative word."""
    return [
        {
            "prompt": f"Write a review of {kind} number {i + offset}.",
            "chosen": f"A {GOOD[i % 6]} {kind}.",
            "rejected": f"A {BAD[(i + 1) % 6]} {kind}.",
        }
        for i in range(n)
    ]


@pytest.fixture()
def policy(tiny_tok):
    return tiny_policy(tiny_tok, seed=0)


def make(policy, tok, data=None, **config):
    config.setdefault("learning_rate", 1e-3)
    config.setdefault("batch_size", 4)
    return DPOStage(policy, tok, review_pairs(12) if data is None else data, **config)


def test_first_sigmoid_loss_is_log2_and_metric_names_are_known(policy, tiny_tok):
    stage = make(policy, tiny_tok)
    row = stage.step()[0]
    assert row["loss/dpo"] == pytest.approx(math.log(2), abs=1e-6)  # policy == reference
    assert row["rewards/margin"] == 0 and row["objective/kl"] == 0
    expected = {"loss/dpo", "rewards/chosen", "rewards/rejected", "rewards/accuracy", "rewards/margin"}
    expected |= {"objective/kl", "train/learning_rate", "train/grad_norm"}
    assert expected <= set(row)
    assert [k for k in row if not is_known(k)] == []
    assert row["train/grad_norm"] > 0


def test_dpo_raises_held_out_implicit_reward_accuracy(policy, tiny_tok):
    stage = make(policy, tiny_tok, review_pairs(24))
    held_out = review_pairs(12, kind="story", offset=100)  # unseen prompts and texts
    before = stage.evaluate(held_out)
    rows = stage.step(30)
    after = stage.evaluate(held_out)
    assert before["rewards/accuracy"] == 0 and before["rewards/margin"] == 0  # policy == reference
    assert after["rewards/accuracy"] >= 0.9
    assert after["rewards/margin"] > 0.2
    assert rows[-1]["loss/dpo"] < 0.5 * rows[0]["loss/dpo"]
    assert after["objective/kl"] != 0


def test_bf16_autocast_starts_at_log2_and_learns(policy, tiny_tok):
    stage = make(policy, tiny_tok, review_pairs(24), mixed_precision="bf16")
    rows = stage.step(30)
    assert rows[0]["loss/dpo"] == pytest.approx(math.log(2), abs=1e-6)  # same autocast on both sides
    assert rows[-1]["loss/dpo"] < 0.5 * rows[0]["loss/dpo"]


def test_sigmoid_loss_with_soft_target_matches_formula():
    pc, pr, rc, rr = (
        torch.tensor([-10.0]),
        torch.tensor([-15.0]),
        torch.tensor([-12.0]),
        torch.tensor([-14.0]),
    )
    h = (-10 + 12) - (-15 + 14)  # 3
    beta, t = 0.5, 0.7
    expected = -t * math.log(1 / (1 + math.exp(-beta * h))) - (1 - t) * math.log(1 / (1 + math.exp(beta * h)))
    got = dpo_loss(pc, pr, rc, rr, beta=beta, targets=torch.tensor([t]))
    assert got.item() == pytest.approx(expected, rel=1e-6)
    hard = dpo_loss(pc, pr, rc, rr, beta=beta)
    assert hard.item() == pytest.approx(-math.log(1 / (1 + math.exp(-1.5))), rel=1e-6)
    # t = 0.5 asks for no preference: the loss is smallest at h = 0
    losses = [
        dpo_loss(torch.tensor([x]), pr, rc, rr, beta=beta, targets=torch.tensor([0.5])).item()
        for x in (-12.0, -13.0, -11.0)
    ]
    assert losses[1] < losses[0] < losses[2] or losses[1] < losses[2] < losses[0]


def test_ipo_loss_on_hand_computed_numbers():
    pc, pr, rc, rr = (
        torch.tensor([-10.0]),
        torch.tensor([-15.0]),
        torch.tensor([-12.0]),
        torch.tensor([-14.0]),
    )
    lengths = {"chosen_tokens": torch.tensor([4]), "rejected_tokens": torch.tensor([5])}
    # per-token log-ratios: chosen 2/4 = 0.5, rejected -1/5 = -0.2 -> h = 0.7; 1/(2 beta) = 1
    hard = dpo_loss(pc, pr, rc, rr, beta=0.5, loss_type="ipo", **lengths)
    assert hard.item() == pytest.approx((0.7 - 1) ** 2, rel=1e-5)
    soft = dpo_loss(pc, pr, rc, rr, beta=0.5, loss_type="ipo", targets=torch.tensor([0.75]), **lengths)
    assert soft.item() == pytest.approx(0.75 * 0.09 + 0.25 * 1.7**2, rel=1e-5)
    with pytest.raises(ValueError, match="lengths"):
        dpo_loss(pc, pr, rc, rr, beta=0.5, loss_type="ipo")


def test_ipo_stage_first_loss_and_learning(policy, tiny_tok):
    stage = make(policy, tiny_tok, loss_type="ipo", beta=0.5)
    rows = stage.step(15)
    assert rows[0]["loss/dpo"] == pytest.approx(1.0, abs=1e-6)  # (0 - 1/(2*0.5))^2
    assert rows[-1]["rewards/margin"] > 0


def test_label_smoothing_equals_soft_target(policy, tiny_tok):
    ref = tiny_policy(tiny_tok, seed=1)  # a different reference, so h != 0
    pair = review_pairs(1)
    smoothed = make(policy, tiny_tok, pair, ref_policy=ref, label_smoothing=0.2).evaluate(pair)
    soft_pair = [{**pair[0], "target": 0.8}]
    soft = make(policy, tiny_tok, soft_pair, ref_policy=ref).evaluate(soft_pair)
    m = smoothed["rewards/margin"]  # beta * h for the single pair
    expected = -0.8 * F.logsigmoid(torch.tensor(m)) - 0.2 * F.logsigmoid(torch.tensor(-m))
    assert smoothed["loss/dpo"] == pytest.approx(expected.item(), rel=1e-5)
    assert soft["loss/dpo"] == pytest.approx(expected.item(), rel=1e-5)
    hard = make(policy, tiny_tok, pair, ref_policy=ref, soft_targets=False).evaluate(soft_pair)
    assert hard["loss/dpo"] == pytest.approx(-F.logsigmoid(torch.tensor(m)).item(), rel=1e-5)


def test_reference_stays_frozen(policy, tiny_tok):
    stage = make(policy, tiny_tok)
    before = {k: v.clone() for k, v in stage.ref_policy.state_dict().items()}
    policy_before = policy.transformer.h[0].attn.c_attn.weight.detach().clone()
    stage.step(5)
    assert stage.ref_policy is not policy and not stage.ref_policy.training
    assert all(not p.requires_grad for p in stage.ref_policy.parameters())
    assert all(torch.equal(before[k], v) for k, v in stage.ref_policy.state_dict().items())
    assert not torch.equal(policy.transformer.h[0].attn.c_attn.weight, policy_before)


def test_lora_reference_is_the_adapter_switched_off(policy, tiny_tok):
    peft = pytest.importorskip("peft")
    model = peft.get_peft_model(policy, peft.LoraConfig(r=4, target_modules=["c_attn"], fan_in_fan_out=True))
    stage = make(model, tiny_tok)
    assert stage.ref_policy is None and stage.uses_lora
    base = {k: v.clone() for k, v in model.named_parameters() if "lora_" not in k}
    rows = stage.step(8)
    assert rows[0]["loss/dpo"] == pytest.approx(math.log(2), abs=1e-6)
    assert rows[-1]["rewards/margin"] > 0
    assert all(torch.equal(base[k], v) for k, v in model.named_parameters() if "lora_" not in k)


def test_set_changes_beta_learning_rate_and_batch_size(policy, tiny_tok):
    stage = make(policy, tiny_tok)
    stage.step()
    stage.set(beta=0.5, learning_rate=1e-4, batch_size=2)
    row = stage.step()[0]
    assert row["objective/beta"] == 0.5 and row["train/learning_rate"] == 1e-4
    assert stage.position == 6  # 4 pairs, then 2
    with pytest.raises(ValueError, match="changeable"):
        stage.set(loss_type="ipo")


def test_background_run(policy, tiny_tok):
    stage = make(policy, tiny_tok)
    stage.run(steps=3)
    stage.wait(30)
    assert stage.step_count == 3 and stage.status == "done"
    assert list(stage.history["step"]) == [1, 2, 3]


def test_order_is_seeded_and_covers_every_pair_each_pass(policy, tiny_tok):
    stage = make(policy, tiny_tok, review_pairs(10), batch_size=4, seed=3)
    seen = [stage._next_batch() for _ in range(5)]  # 20 pairs = 2 passes
    first_pass = [b for batch in seen for b in batch][:10]
    assert sorted(b.chosen for b in first_pass) == sorted(t.chosen for t in stage._tokenized)
    again = make(tiny_policy(tiny_tok, seed=0), tiny_tok, review_pairs(10), batch_size=4, seed=3)
    assert [again._next_batch() for _ in range(5)] == seen


def test_save_load_in_process_continues(policy, tiny_tok, tmp_path):
    stage = make(policy, tiny_tok)
    stage.step(3)
    stage.save(tmp_path / "ckpt")
    loaded = DPOStage.load(tmp_path / "ckpt")
    assert loaded.step_count == 3 and len(loaded.history) == 3
    assert (loaded.epoch, loaded.position) == (stage.epoch, stage.position)
    assert [p.to_dict() for p in loaded.pairs] == [p.to_dict() for p in stage.pairs]
    files = {p.relative_to(tmp_path / "ckpt").as_posix() for p in (tmp_path / "ckpt").rglob("*")}
    assert {"models/policy/model.safetensors", "models/reference/model.safetensors", "optim.pt"} <= files
    # two steps: the second one's loss depends on the restored optimizer state too
    expected, got = stage.step(2), loaded.step(2)
    assert [r["loss/dpo"] for r in got] == pytest.approx([r["loss/dpo"] for r in expected], rel=1e-6)
    into = DPOStage.load(tmp_path / "ckpt", policy=tiny_policy(tiny_tok, seed=5))  # e.g. the lab's policy
    assert into.step(2)[-1]["loss/dpo"] == pytest.approx(expected[-1]["loss/dpo"], rel=1e-6)


def test_lora_checkpoint_round_trip(policy, tiny_tok, tmp_path):
    peft = pytest.importorskip("peft")

    def lora_model():
        config = peft.LoraConfig(
            r=4, target_modules=["c_attn"], fan_in_fan_out=True, init_lora_weights="gaussian"
        )
        return peft.get_peft_model(tiny_policy(tiny_tok, seed=0), config)

    stage = make(lora_model(), tiny_tok)
    stage.step(2)
    stage.save(tmp_path / "ckpt")
    assert (tmp_path / "ckpt/models/policy/adapter_model.safetensors").is_file()
    assert not (tmp_path / "ckpt/models/reference").exists()  # the reference is the base model
    expected = stage.step(2)
    with pytest.raises(ValueError, match="LoRA"):
        DPOStage.load(tmp_path / "ckpt")
    got = DPOStage.load(tmp_path / "ckpt", policy=lora_model()).step(2)
    assert [r["loss/dpo"] for r in got] == pytest.approx([r["loss/dpo"] for r in expected], rel=1e-6)


@pytest.mark.slow
def test_save_load_in_fresh_process_matches_uninterrupted_run(tiny_tok, tmp_path):
    uninterrupted = make(tiny_policy(tiny_tok, seed=0), tiny_tok)
    uninterrupted.step(4)
    expected = uninterrupted.step(2)

    first = make(tiny_policy(tiny_tok, seed=0), tiny_tok)
    first.step(4)
    first.save(tmp_path / "ckpt")
    script = textwrap.dedent(f"""
        import json, torch
        torch.set_num_threads(1)
        from rlhf_lab.stages.dpo import DPOStage
        stage = DPOStage.load({str(tmp_path / "ckpt")!r})
        print(json.dumps(stage.step(2)))
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert [r["step"] for r in got] == [5, 6]
    for mine, theirs in zip(expected, got):
        for key in ("loss/dpo", "rewards/margin", "train/grad_norm"):
            assert theirs[key] == pytest.approx(mine[key], rel=1e-5, abs=1e-7)


def test_clear_errors(policy, tiny_tok):
    with pytest.raises(ValueError, match="label some pairs first"):
        make(policy, tiny_tok, [])
    pair = review_pairs(1)[0]
    with pytest.raises(ValueError, match="pair 0: chosen and rejected are identical"):
        make(policy, tiny_tok, [{**pair, "rejected": pair["chosen"]}])
    with pytest.raises(ValueError, match="pair 0: prompt is empty"):
        make(policy, tiny_tok, [{**pair, "prompt": "  "}])
    with pytest.raises(ValueError, match="loss_type"):
        make(policy, tiny_tok, loss_type="hinge")
    with pytest.raises(TypeError, match="unknown DPO settings"):
        make(policy, tiny_tok, betta=0.1)
    stage = make(policy, tiny_tok)
    with pytest.raises(ValueError, match="Empty prompt"):
        stage.sample([""])
    assert len(stage.sample(["Write a review.", "Say hi."], max_new_tokens=4)) == 2


def test_store_pairs_soft_labels_and_refresh(policy, tiny_tok, tmp_path):
    store_module = pytest.importorskip("rlhf_lab.store")
    store = store_module.PreferenceStore(tmp_path / "labels.sqlite")
    with pytest.raises(ValueError, match="label some pairs first"):
        make(policy, tiny_tok, store)
    responses = ["A lovely film.", "A dull film."]
    for annotator, verdict in [("ana", "A"), ("bo", "A"), ("cy", "B")]:
        store.add("Review a film.", responses, verdict, annotator=annotator)
    store.add("Review a book.", ["A fun book.", "A bad book."], "tie", annotator="ana")  # excluded
    stage = make(policy, tiny_tok, store, config=DPOConfig(batch_size=2))
    assert len(stage.pairs) == 1 and stage.pairs[0].target == pytest.approx(2 / 3)
    stage.step(2)
    store.add("Review a song.", ["A superb song.", "A poor song."], "A", annotator="ana")
    assert stage.refresh() == 2
    stage.step()
    stage.save(tmp_path / "ckpt")
    assert DPOStage.load(tmp_path / "ckpt").source.path == store.path  # refresh() keeps reading the store


def test_lab_dpo_factory(tiny_lab):
    tiny_lab.store.add("Say hi.", ["Hello there!", "Go away."], "A", annotator="me")
    stage = tiny_lab.dpo(batch_size=1)
    assert stage.config.learning_rate == tiny_lab.defaults["dpo_learning_rate"]
    row = stage.step()[0]
    assert row["lab_step"] == tiny_lab.clock.value == 1


def test_loss_equals_trl_dpo_trainer(policy, tiny_tok, tmp_path):
    """Our sigmoid and IPO losses equal TRL 1.16 DPOTrainer.compute_loss on the same pairs."""
    datasets = pytest.importorskip("datasets")
    trl = pytest.importorskip("trl")
    from rlhf_lab.chat import format_prompt

    ref = tiny_policy(tiny_tok, seed=1)
    pairs = [
        {"prompt": "Review a movie.", "chosen": "A great film.", "rejected": "A dull and boring film."},
        {"prompt": "Say hi.", "chosen": "Hello there!", "rejected": "Go away."},
    ]
    rows = [{**p, "prompt": format_prompt(tiny_tok, p["prompt"])} for p in pairs]  # TRL appends EOS itself
    for loss_type in ("sigmoid", "ipo"):
        ours = make(policy, tiny_tok, pairs, ref_policy=ref, loss_type=loss_type, beta=0.3).evaluate(pairs)
        args = trl.DPOConfig(
            output_dir=str(tmp_path / "trl"),
            beta=0.3,
            loss_type=[loss_type],
            bf16=False,
            use_cpu=True,
            report_to=[],
            disable_dropout=True,
            activation_checkpointing=False,
            max_length=None,
        )
        trainer = trl.DPOTrainer(
            model=policy,
            ref_model=ref,
            args=args,
            train_dataset=datasets.Dataset.from_list(rows),
            processing_class=tiny_tok,
        )
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(rows))])
        policy.eval()
        with torch.no_grad():
            theirs = trainer.compute_loss(trainer.model, batch).item()
        assert ours["loss/dpo"] == pytest.approx(theirs, rel=1e-5)
