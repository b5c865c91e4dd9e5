"""The reward-model stage, its reward callable and ensembles, on the tiny preset."""

import collections
import math
import random

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from rlhf_lab.chat import format_conversation
from rlhf_lab.errors import NonFiniteLossError
from rlhf_lab.metrics import is_known
from rlhf_lab.models.tiny import tiny_reward_model
from rlhf_lab.reward import (
    RewardEnsemble,
    RewardModelStage,
    RewardScorer,
    pairwise_loss,
    read_pairs,
)
from rlhf_lab.reward.evaluation import spearman_rho
from rlhf_lab.store import PreferenceStore

WORDS = (
    "the film was story acting plot music cast scenes movie ending long short funny slow bright dark".split()
)
NO_DROPOUT = {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}  # train-mode scores = eval-mode


def clean_pairs(n, seed=0, start=0):
    """The chosen review contains "great", the rejected one does not; nothing else differs."""
    rng = random.Random(seed)
    pairs = []
    for i in range(start, start + n):
        good, bad = rng.sample(WORDS, 5), rng.sample(WORDS, 5)
        good.insert(rng.randrange(6), "great")
        pairs.append(
            {
                "prompt": f"Write a review of movie number {i}.",
                "chosen": " ".join(good),
                "rejected": " ".join(bad),
            }
        )
    return pairs


def fill(store, pairs):
    for i, p in enumerate(pairs):  # show the chosen side first or second
        if i % 2:
            store.add(p["prompt"], [p["chosen"], p["rejected"]], "A", annotator="rule")
        else:
            store.add(p["prompt"], [p["rejected"], p["chosen"]], "B", annotator="rule")
    return store


def make_stage(tok, data, seed=0, model_overrides=None, **config):
    settings = {"learning_rate": 1e-3, "batch_size": 16, "epochs": 4, **config}
    model = tiny_reward_model(tok, seed=seed, **(model_overrides or {}))
    return RewardModelStage(model, tok, data, **settings)


def test_learns_a_clean_rule_from_a_store(tiny_tok):
    torch.manual_seed(0)
    store = fill(PreferenceStore(":memory:"), clean_pairs(200))
    stage = make_stage(tiny_tok, store, epochs=6)  # 4 epochs leave 1-2 of 18 val pairs wrong on some seeds
    summary = stage.fit(progress=False)
    assert summary["val_accuracy"] >= 0.9 and summary["val_auc"] >= 0.9
    assert summary["n_train_pairs"] + summary["n_val_pairs"] + summary["n_test_pairs"] == 200
    assert summary["n_test_pairs"] > 0  # 200 prompts: an 80/10/10 split
    assert summary["seconds"] > 0 and summary["steps"] == 6 * math.ceil(summary["n_train_pairs"] / 16)
    assert stage.evaluate("test", log=False)["accuracy"] >= 0.9
    for row in stage.rows:
        assert all(is_known(key) for key in row), row
    assert stage.history["rm/val_accuracy"].dropna().iloc[-1] == summary["val_accuracy"]
    great, dull = stage(["Write a review."] * 2, ["the film was great", "the film was slow"])
    assert great > dull


def test_linear_schedule_warms_up_then_decays_and_restores_the_rate(tiny_tok):
    stage = make_stage(
        tiny_tok, clean_pairs(40), epochs=None, steps=10, schedule="linear", warmup_ratio=0.2, split=[1, 0, 0]
    )
    seen, step = [], stage.step

    def recording_step(n, **kwargs):
        seen.append(stage.optimizer.param_groups[0]["lr"])
        return step(n, **kwargs)

    stage.step = recording_step
    stage.fit(warm_start=False, progress=False)
    assert [round(lr / 1e-3, 3) for lr in seen] == [
        0.5,
        1.0,
        1.0,
        0.875,
        0.75,
        0.625,
        0.5,
        0.375,
        0.25,
        0.125,
    ]
    assert stage.optimizer.param_groups[0]["lr"] == 1e-3  # the next step (or fit) starts from the setting
    with pytest.raises(ValueError, match="schedule must be one of"):
        make_stage(tiny_tok, clean_pairs(4), schedule="cosine")


def test_bf16_autocast_scores_close_to_fp32_and_still_learns(tiny_tok):
    torch.manual_seed(0)
    store = fill(PreferenceStore(":memory:"), clean_pairs(200))
    stage = make_stage(tiny_tok, store, mixed_precision="bf16")
    texts = (["Write a review."] * 2, ["the film was great", "the film was slow"])
    full = RewardScorer(stage.model, tiny_tok)(*texts)
    half = stage.scorer(*texts)
    assert torch.allclose(full, half, atol=0.05) and not torch.equal(full, half)  # bf16 rounding, not fp32
    assert stage.fit(progress=False)["val_accuracy"] >= 0.9


def test_splits_hold_prompts_apart_and_never_move(tiny_tok):
    store = fill(PreferenceStore(":memory:"), clean_pairs(60))
    stage = make_stage(tiny_tok, store)
    stage.refresh()
    first = dict(stage.split_of)
    assert set(first.values()) == {"train", "val"}  # under 100 prompts: 90/10, no test set
    fill(store, clean_pairs(80, seed=1, start=60))  # now 140 prompts: 80/10/10 for new ones
    store.add("Write a review of movie number 3.", ["a new take", "another take"], "A")  # an old prompt
    stage.refresh()
    assert {p: s for p, s in stage.split_of.items() if p in first} == first
    assert "test" in stage.split_of.values()
    splits = {name: {p.prompt for p in stage.split_pairs(name)} for name in ("train", "val", "test")}
    assert not (splits["train"] & splits["val"]) and not (splits["train"] & splits["test"])
    assert not (splits["val"] & splits["test"])


def test_tiny_data_still_gets_a_validation_prompt(tiny_tok):
    stage = make_stage(tiny_tok, clean_pairs(3))
    stage.refresh()
    assert sorted(stage.split_of.values()).count("val") >= 1 and "train" in stage.split_of.values()


def test_pairwise_loss_soft_labels_and_margins_by_hand():
    chosen, rejected = torch.tensor([1.0, 0.5]), torch.tensor([0.0, 1.0])
    plain = pairwise_loss(chosen, rejected)
    assert plain.item() == pytest.approx(
        (-math.log(1 / (1 + math.exp(-1.0))) - math.log(1 / (1 + math.exp(0.5)))) / 2
    )
    target, margin = torch.tensor([1.0, 0.7]), torch.tensor([0.5, 0.0])
    d0, d1 = 1.0 - 0.5, -0.5

    def sig(x):
        return 1 / (1 + math.exp(-x))

    by_hand = (-math.log(sig(d0)) - (0.7 * math.log(sig(d1)) + 0.3 * math.log(1 - sig(d1)))) / 2
    assert pairwise_loss(chosen, rejected, target, margin).item() == pytest.approx(by_hand, rel=1e-6)
    assert pairwise_loss(chosen, rejected, target, margin).item() != pytest.approx(plain.item())


def test_stage_loss_uses_targets_and_margins(tiny_tok):
    pairs = [
        {
            "prompt": "Review it.",
            "chosen": "great fun",
            "rejected": "slow plot",
            "target": 0.8,
            "margin": 0.5,
        },
        {"prompt": "Rate it.", "chosen": "bright cast", "rejected": "dark ending", "target": 1.0},
        {
            "prompt": "Judge it.",
            "chosen": "funny music",
            "rejected": "long scenes",
            "target": 0.6,
            "margin": 1.0,
        },
    ]
    stage = make_stage(tiny_tok, pairs, model_overrides=NO_DROPOUT, split=[1.0, 0.0, 0.0], batch_size=3)
    r_c = stage([p["prompt"] for p in pairs], [p["chosen"] for p in pairs]).double()
    r_r = stage([p["prompt"] for p in pairs], [p["rejected"] for p in pairs]).double()
    t, m = torch.tensor([0.8, 1.0, 0.6]).double(), torch.tensor([0.5, 0.0, 1.0]).double()
    expected = F.binary_cross_entropy_with_logits(r_c - r_r - m, t).item()
    row = stage.step(1, progress=False)[0]  # the loss is computed before the update
    assert row["loss/rm"] == pytest.approx(expected, rel=1e-4)
    assert row["rm/n_pairs"] == 3
    assert row["rm/margin"] == pytest.approx((r_c - r_r).mean().item(), rel=1e-4)


def test_ranking_loss_on_a_three_way_ranking_by_hand(tiny_tok):
    store = PreferenceStore(":memory:")
    a, b, c = "great acting", "slow plot", "dull music"
    store.add("Review the film.", [a, b, c], ranking=[0, 2, 1])  # a > c > b: three pairs
    store.add("Review the book.", ["bright story", "dark ending"], "A")  # one pair
    stage = make_stage(
        tiny_tok, store, model_overrides=NO_DROPOUT, split=[1.0, 0.0, 0.0], batch_size=2, loss="ranking"
    )
    stage.refresh()
    assert len(stage.pairs) == 4 and len(stage._units) == 2  # the ranking is one unit

    r = {x: stage("Review the film.", x).item() for x in (a, b, c)}
    r_book = stage(["Review the book."] * 2, ["bright story", "dark ending"])

    def nll(d):
        return -math.log(1 / (1 + math.exp(-d)))

    film = (nll(r[a] - r[c]) + nll(r[a] - r[b]) + nll(r[c] - r[b])) / 3
    book = nll((r_book[0] - r_book[1]).item())
    row = stage.step(1, progress=False)[0]
    assert row["loss/rm"] == pytest.approx((film + book) / 2, rel=1e-4)  # each item weighs the same
    bradley_terry = (3 * film + book) / 4
    assert row["loss/rm"] != pytest.approx(bradley_terry, rel=1e-3)


def test_evaluate_reports_spearman_gold_and_agreement(tiny_tok):
    store = PreferenceStore(":memory:")
    responses = ["great acting", "slow plot", "dull music"]
    store.add("Review the film.", responses, ranking=[0, 2, 1], annotator="ana")
    store.add("Review the film.", responses, ranking=[0, 1, 2], annotator="bo")  # they half agree
    for p in clean_pairs(6):
        store.add(p["prompt"], [p["chosen"], p["rejected"]], "A", annotator="ana")
    stage = make_stage(tiny_tok, store, split=[1.0, 0.0, 0.0], soft_labels=True)
    result = stage.evaluate("train", log=False)

    rewards = stage("Review the film.", responses).tolist()
    # Merged votes: wins per response = sum of targets (great acting won all four comparisons).
    wins = {r: 0.0 for r in responses}
    for p in stage.pairs:
        if p.prompt == "Review the film.":
            wins[p.chosen] += p.target
            wins[p.rejected] += 1 - p.target
    assert result["spearman"] == pytest.approx(spearman_rho(rewards, [wins[r] for r in responses]))
    # ana and bo agree on 2 of the 3 comparisons of their shared item.
    assert result["agreement_ceiling"] == pytest.approx(2 / 3)
    assert isinstance(result["reliability"], pd.DataFrame) and result["n_pairs"] == len(stage.pairs)

    class Gold:
        def score(self, prompt, response):
            return float("great" in response)

    gold = stage.evaluate("train", gold=Gold(), log=False)["gold_accuracy"]
    hard = [p for p in stage.pairs if ("great" in p.chosen) != ("great" in p.rejected)]
    margins = stage.score_pairs(
        [p.prompt for p in hard], [p.chosen for p in hard], [p.rejected for p in hard]
    )
    by_hand = np.mean([(m > 0) == ("great" in p.chosen) for m, p in zip(margins.tolist(), hard)])
    assert gold == pytest.approx(by_hand)


def test_reward_callable_batches_and_ignores_padding(tiny_tok):
    stage = make_stage(tiny_tok, clean_pairs(4))
    prompts = [f"Prompt {i}" for i in range(10)]
    responses = ["great " * (i + 1) for i in range(10)]
    seen = []
    forward = stage.scorer.forward
    stage.scorer.forward = lambda p, r: seen.append(len(p)) or forward(p, r)
    scores = stage(prompts, responses, batch_size=3)
    assert scores.shape == (10,) and scores.dtype == torch.float32 and not scores.requires_grad
    assert seen == [3, 3, 3, 1]
    alone = torch.cat([stage([p], [r]) for p, r in zip(prompts, responses)])
    assert torch.allclose(scores, alone, atol=1e-5)  # batch-mates and their padding change nothing
    assert stage.model.training  # the mode the model was in is restored


def test_extra_right_padding_does_not_change_a_score(tiny_tok):
    model = tiny_reward_model(tiny_tok, seed=0).eval()
    scorer = RewardScorer(model, tiny_tok)
    assert scorer.layout == "chat"
    enc = scorer.encode(["Say hi."], ["Hello there!"])
    text = tiny_tok.decode(enc["input_ids"][0])
    assert text == format_conversation(tiny_tok, "Say hi.", "Hello there!")
    pad = torch.full((1, 7), tiny_tok.pad_token_id)
    padded = {
        "input_ids": torch.cat([enc["input_ids"], pad], 1),
        "attention_mask": torch.cat([enc["attention_mask"], torch.zeros_like(pad)], 1),
    }
    with torch.no_grad():
        assert torch.allclose(model(**enc).logits, model(**padded).logits, atol=1e-6)


def test_margins_for_active_learning(tiny_tok):
    stage = make_stage(tiny_tok, clean_pairs(4))
    margins = stage.score_pairs("Review it.", ["great film", "slow film"], ["slow film", "great film"])
    assert margins.shape == (2,) and margins[0].item() == pytest.approx(-margins[1].item(), abs=1e-5)
    assert stage.margin("Review it.", "great film", "slow film") == pytest.approx(margins[0].item(), abs=1e-5)
    pair = {"prompt": "Review it.", "chosen": "great film", "rejected": "slow film"}
    flipped = {**pair, "chosen": "slow film", "rejected": "great film"}
    assert stage.accuracy_on([pair, flipped]) == 0.5  # exactly one of the two orders wins
    assert stage.accuracy_on([pair]) == float(margins[0].item() > 0)
    with pytest.raises(ValueError, match="at least one pair"):
        stage.accuracy_on([])


@pytest.mark.slow  # three fits: ~3 s on an idle 2-core box
def test_warm_start_is_faster_and_keeps_held_out_prompts(tiny_tok):
    torch.manual_seed(0)
    store = fill(PreferenceStore(":memory:"), clean_pairs(150))
    stage = make_stage(tiny_tok, store, learning_rate=2e-3)
    stage.fit(progress=False)
    held_out = {p for p, s in stage.split_of.items() if s != "train"}

    fill(store, clean_pairs(40, seed=1, start=150))  # new labels arrive
    warm = stage.fit(progress=False)
    assert warm["warm_start"] and warm["val_accuracy"] >= 0.9
    assert {p for p, s in stage.split_of.items() if s != "train"} >= held_out
    trained_on = {p.prompt for p in stage.split_pairs("train")}
    assert not trained_on & held_out

    fresh = make_stage(tiny_tok, store, learning_rate=2e-3).fit(progress=False)
    assert not fresh["warm_start"]
    assert warm["steps"] < fresh["steps"]  # a short top-up instead of a full retrain
    assert warm["val_accuracy"] >= fresh["val_accuracy"] - 0.05


def test_fit_from_scratch_restarts_from_initial_weights(tiny_tok):
    stage = make_stage(tiny_tok, clean_pairs(20), model_overrides=NO_DROPOUT, center_rewards=False)
    before = stage("Say hi.", "hello").item()
    stage.fit(epochs=1, progress=False)
    assert stage("Say hi.", "hello").item() != pytest.approx(before)
    stage._reset_weights()
    assert stage("Say hi.", "hello").item() == pytest.approx(before)


def test_early_stopping_keeps_the_best_weights(tiny_tok):
    torch.manual_seed(0)
    store = fill(PreferenceStore(":memory:"), clean_pairs(120))
    stage = make_stage(tiny_tok, store, early_stopping=True, epochs=30, learning_rate=2e-3)
    summary = stage.fit(progress=False)
    assert summary["stopped_early"] and summary["epochs"] < 30
    assert summary["val_accuracy"] >= 0.9


def test_rewards_are_centred_on_the_training_responses(tiny_tok):
    stage = make_stage(tiny_tok, clean_pairs(30))
    stage.fit(epochs=1, progress=False)
    train = stage.split_pairs("train")
    responses = list(dict.fromkeys((p.prompt, r) for p in train for r in (p.chosen, p.rejected)))
    scores = stage([p for p, _ in responses], [r for _, r in responses])
    assert abs(scores.mean().item()) < 1e-4


def test_non_finite_loss_leaves_weights_alone(tiny_tok):
    pairs = [{"prompt": "Say hi.", "chosen": "hello", "rejected": "go away", "margin": float("inf")}] * 2
    stage = make_stage(
        tiny_tok, [*pairs, {"prompt": "Other", "chosen": "a", "rejected": "b"}], split=[1, 0, 0]
    )
    before = {k: v.clone() for k, v in stage.model.state_dict().items()}
    with pytest.raises(NonFiniteLossError):
        stage.step(1, progress=False)
    assert all(torch.equal(before[k], v) for k, v in stage.model.state_dict().items())


def test_pairs_from_dataframe_and_bad_rows(tiny_tok):
    frame = pd.DataFrame(clean_pairs(3))
    frame["target"] = [1.0, 0.75, None]
    pairs = read_pairs(frame)
    assert [p.target for p in pairs] == [1.0, 0.75, 1.0] and pairs[0].item == pairs[0].prompt
    with pytest.raises(ValueError, match="pair 1: .*rejected"):
        read_pairs([clean_pairs(1)[0], {"prompt": "x", "chosen": "y"}])
    with pytest.raises(TypeError, match="PreferenceStore, a DataFrame or a list"):
        read_pairs("pairs.jsonl")
    # Positional tuples are refused, not guessed: (prompt, a, b) of an unlabelled pair would become a label.
    with pytest.raises(ValueError, match=r"pair 0: is a tuple of 3 values; a pair needs named fields"):
        read_pairs([("Write a review.", "good film", "bad film")])
    # The bundled rated pairs (and pairs still to label) carry "responses": the error says what turns them into pairs.
    rated = {"prompt": "Write a review.", "responses": ["good film", "bad film"], "judgements": {"gold": "A"}}
    with pytest.raises(
        ValueError, match=r"pair 0: has 'responses' but no .*preference_pairs\(task, rater='gold'\)"
    ):
        read_pairs([rated])
    record = collections.namedtuple("Record", "prompt chosen rejected")
    assert read_pairs([record("Write a review.", "good film", "bad film")])[0].chosen == "good film"
    with pytest.raises(ValueError, match="loss must be one of"):
        make_stage(tiny_tok, clean_pairs(3), loss="hinge")


def test_ensemble_mean_std_and_conservative(tiny_tok):
    torch.manual_seed(0)
    data = clean_pairs(40)
    ens = RewardModelStage.ensemble(
        3,
        lambda seed: (tiny_reward_model(tiny_tok, seed=seed), tiny_tok),
        data,
        learning_rate=1e-3,
        epochs=1,
        k=2.0,
    )
    assert len(ens) == 3 and [m.config.seed for m in ens.members] == [0, 1, 2]
    summaries = ens.fit(progress=False)
    assert len(summaries) == 3
    assert ens.members[0].split_of == ens.members[2].split_of  # one held-out set for all members

    prompts, responses = ["Review it."] * 5, ["great film", "slow film", "the plot", "great cast", "dark"]
    scores = ens.scores(prompts, responses)
    assert scores.shape == (3, 5)
    mean, std = ens.mean(prompts, responses), ens.std(prompts, responses)
    assert mean.shape == std.shape == (5,) and (std > 0).all()
    assert torch.allclose(mean, scores.mean(0)) and torch.allclose(std, scores.std(0))
    assert torch.allclose(ens.conservative(prompts, responses), mean - 2.0 * std)
    assert torch.allclose(ens(prompts, responses), mean)
    assert torch.allclose(ens.disagreement(prompts, responses), std)
    cautious = RewardEnsemble(ens.members, k=1.0, reduce="conservative")
    assert torch.allclose(cautious(prompts, responses), mean - std)
    assert ens.score_pairs(prompts[:2], responses[:2], responses[2:4]).shape == (2,)
    assert len(ens.evaluate()) == 3


def test_ensemble_of_models_and_callables(tiny_tok):
    model = tiny_reward_model(tiny_tok, seed=0)
    ens = RewardEnsemble([(model, tiny_tok), lambda p, r: torch.ones(len(r))])
    out = ens(["a", "b"], ["x", "y"])
    assert out.shape == (2,)
    assert ens.std(["a"], ["x"]).shape == (1,)


def test_save_load_resumes_the_same_run(tiny_tok, tmp_path):
    torch.manual_seed(0)
    store = fill(PreferenceStore(":memory:"), clean_pairs(40))
    stage = make_stage(tiny_tok, store, batch_size=8)
    stage.fit(epochs=1, progress=False)
    stage.step(2, progress=False)
    stage.save(tmp_path / "rm")
    expected = [r["loss/rm"] for r in stage.step(3, progress=False)]
    expected_scores = stage(["Say hi."], ["hello"])

    assert (tmp_path / "rm" / "models" / "reward" / "model.safetensors").is_file()
    assert (tmp_path / "rm" / "data.jsonl").read_text().count("\n") == 40
    resumed = RewardModelStage.load(tmp_path / "rm", data=store)
    assert resumed.split_of == stage.split_of and resumed.source is store
    got = [r["loss/rm"] for r in resumed.step(3, progress=False)]
    assert got == pytest.approx(expected, rel=1e-4)
    assert torch.allclose(resumed(["Say hi."], ["hello"]), expected_scores, atol=1e-5)
    assert len(resumed.history) == len(stage.history)
    with pytest.raises(Exception, match="initial weights"):
        resumed.fit(warm_start=False, progress=False)


def test_lab_factories(tiny_lab):
    fill(tiny_lab.store, clean_pairs(12))
    stage = tiny_lab.reward_model()
    assert stage.source is tiny_lab.store and stage.config.learning_rate == 1e-3
    stage.step(2, progress=False)
    assert tiny_lab.clock.value == 2
    from_list = tiny_lab.reward_model(clean_pairs(5), batch_size=4)
    assert from_list.step(1, progress=False)[0]["rm/n_pairs"] >= 1


@pytest.mark.slow
def test_smollm2_preset_backbones_take_a_step_on_cpu():
    from rlhf_lab.models.presets import load_policy, load_reward_backbone
    from rlhf_lab.stages.sft import SFTStage

    model, tok = load_reward_backbone("minilm")
    rm = RewardModelStage(model, tok, clean_pairs(8), learning_rate=3e-5, batch_size=4, max_length=128)
    assert rm.scorer.layout == "pair"  # BERT-style: [CLS] prompt [SEP] response [SEP]
    enc = rm.scorer.encode(["Say hi."], ["Hello!"])
    assert tok.decode(enc["input_ids"][0]) == "[CLS] say hi. [SEP] hello! [SEP]"
    row = rm.step(1, progress=False)[0]
    assert math.isfinite(row["loss/rm"]) and rm(["Say hi."], ["Hello!"]).shape == (1,)

    policy, ptok = load_policy("smollm2")
    demos = [{"prompt": "What is two plus two?", "response": "Four."}] * 2
    sft = SFTStage(policy, ptok, demos, learning_rate=1e-5, batch_size=2, max_length=64)
    assert math.isfinite(sft.step(1, progress=False)[0]["loss/sft"])

    smol_rm, smol_tok = load_reward_backbone("smollm2", policy_tokenizer=ptok)
    stage = RewardModelStage(
        smol_rm, smol_tok, clean_pairs(4), learning_rate=1e-5, batch_size=2, max_length=64
    )
    assert stage.scorer.layout == "chat"
    assert math.isfinite(stage.step(1, progress=False)[0]["loss/rm"])


def test_lab_reward_ensemble(tiny_lab):
    ens = tiny_lab.reward_ensemble(2, clean_pairs(6), k=0.5, batch_size=4)
    assert len(ens) == 2 and ens.k == 0.5
    assert [m.model is not ens.members[0].model for m in ens.members] == [False, True]
    assert ens.members[0].config.learning_rate == 1e-3
    assert ens(["Review it."], ["great film"]).shape == (1,)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"epochs": 0}, ValueError, r"fit\(epochs\) must be at least 1, got 0"),
        ({"epochs": "2"}, TypeError, r"fit\(epochs\) must be a whole number"),
        ({"max_steps": 0}, ValueError, r"fit\(max_steps\) must be at least 1"),
        ({"max_steps": 2.5}, TypeError, r"fit\(max_steps\) must be a whole number"),
    ],
)
def test_fit_refuses_counts_that_are_not_whole_numbers(tiny_tok, kwargs, error, match):
    # fit(epochs=0) used to fall back to the configured 80 steps (0 is falsy) and report "epochs: 640".
    stage = make_stage(tiny_tok, clean_pairs(8))
    with pytest.raises(error, match=match):
        stage.fit(**kwargs)
    assert stage.step_count == 0
