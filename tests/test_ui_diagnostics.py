"""Sample viewer, before/after, reward-model panel, over-optimisation view and token attribution."""

import math

import numpy as np
import pandas as pd
import pytest
from ui_fakes import FakeStage

from rlhf_lab.attribution import (
    as_score_fn,
    attribution_html,
    integrated_gradients,
    occlusion,
    reward_model_scorer,
    split_units,
)
from rlhf_lab.store import PreferenceStore
from rlhf_lab.ui.diagnostics import (
    RewardModelPanel,
    calibration_table,
    evaluate_pairs,
    length_correlation,
    overoptimisation_figure,
    pair_accuracy,
    reliability,
    reward_model_figure,
)
from rlhf_lab.ui.labeller import PairLabeller
from rlhf_lab.ui.samples import BeforeAfter, SampleViewer, samples_table_html

XSS = '<img src=x onerror="window.__xss=1"><script>alert(1)</script>'


class GreatJudge:
    """A judge in the style of rlhf_lab.raters: score = how often "great" appears."""

    def score(self, prompt, response):
        return float(response.lower().count("great"))


# ------------------------------------------------------------------ attribution
def test_split_units_round_trips(tiny_tok):
    text = "  Great film,\ntruly   great. "
    assert "".join(split_units(text)) == text
    assert "".join(split_units(text, tiny_tok)) == text


def test_occlusion_finds_the_words_that_drive_the_score():
    attr = occlusion(GreatJudge(), "Review a film.", "A great film with a great cast.")
    assert attr.base == 2.0
    assert [u.strip() for u in attr.units] == ["A", "great", "film", "with", "a", "great", "cast."]
    assert attr.scores == [0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert attr.top(2) == [("great", 1.0), ("great", 1.0)]


def test_as_score_fn_accepts_functions_judges_and_reward_models(tiny_tok):
    from rlhf_lab.models.tiny import tiny_reward_model

    assert as_score_fn(lambda ps, rs: [len(r) for r in rs])(["p"], ["abc"]) == [3.0]
    assert as_score_fn(GreatJudge())(["p", "p"], ["great", "meh"]) == [1.0, 0.0]

    class RMStage:
        model = tiny_reward_model(tiny_tok, seed=0)
        tokenizer = tiny_tok

    scores = as_score_fn(RMStage())(["p", "p"], ["good", "bad answer"])
    assert len(scores) == 2 and all(math.isfinite(s) for s in scores)
    with pytest.raises(TypeError):
        as_score_fn(42)


def test_integrated_gradients_is_complete(tiny_tok):
    from rlhf_lab.models.tiny import tiny_reward_model

    model = tiny_reward_model(tiny_tok, seed=1)
    attr = integrated_gradients(model, tiny_tok, "Review a film.", "Great film, truly great.", steps=64)
    assert "".join(attr.units) == "Great film, truly great."
    # completeness: attributions sum to r(input) - r(baseline), up to the integration error
    assert sum(attr.scores) == pytest.approx(
        attr.base - attr.reference, abs=1e-3 + 0.02 * abs(attr.base - attr.reference)
    )
    score = reward_model_scorer(model, tiny_tok)(["Review a film."], ["Great film, truly great."])[0]
    assert attr.base == pytest.approx(score, abs=1e-4)


def test_attribution_html_escapes_model_text():
    attr = occlusion(GreatJudge(), "p", f"great {XSS}")
    page = attribution_html(attr)
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;" in page and "&lt;img" in page


# ------------------------------------------------------------------ reward-model panel
def test_reliability_bins_and_length_correlation():
    table = reliability([0.05, 0.15, 0.95, 0.92, 0.97], [0, 0, 1, 1, 0], n_bins=10)
    assert list(table["count"]) == [1, 1, 3]
    assert table["accuracy"].iloc[-1] == pytest.approx(2 / 3)
    corr = length_correlation([1, 2, 3, 4], [2, 4, 6, 100])
    assert corr["spearman"] == pytest.approx(1.0) and corr["pearson"] < 1.0
    assert math.isnan(length_correlation([1, 2], [1, 2])["pearson"])


def test_calibration_plot_of_a_calibrated_scorer_lies_on_the_diagonal():
    # A scorer whose P(A beats B) = sigmoid(margin) is right, stored as labels are: chosen first.
    rng = np.random.default_rng(0)
    m = rng.uniform(-4, 4, 20_000)
    a_wins = rng.random(m.size) < 1 / (1 + np.exp(-m))
    frame = pd.DataFrame({"margin": np.where(a_wins, m, -m), "target": 1.0})
    table = calibration_table(frame, n_bins=10)
    assert table["count"].sum() == 2 * m.size  # both orders
    assert np.abs(table["accuracy"] - table["confidence"]).max() < 0.03
    assert table["accuracy"].iloc[0] < 0.1  # chosen-first alone would read about 0.9 here
    fig = reward_model_figure(
        frame.assign(len_chosen=1, len_rejected=1, r_chosen=frame["margin"], r_rejected=0.0)
    )
    curve = fig.data[2]
    assert np.allclose(curve.x, table["confidence"]) and np.allclose(curve.y, table["accuracy"])


PAIRS = [
    {"prompt": "p", "chosen": "a long and detailed answer", "rejected": "short"},
    {"prompt": "p", "chosen": "great answer here", "rejected": "ok"},
    {"prompt": "p", "chosen": "no", "rejected": "a rambling padded reply"},
]


def length_reward(prompts, responses):
    return [float(len(r.split())) for r in responses]


def test_evaluate_pairs_accuracy_and_figure():
    frame = evaluate_pairs(length_reward, PAIRS)
    assert list(frame["margin"]) == [4.0, 2.0, -3.0]
    assert pair_accuracy(frame) == pytest.approx(2 / 3)
    fig = reward_model_figure(frame, ceiling=0.8)
    bars = fig.data[0]
    assert list(bars.y) == pytest.approx([2 / 3, 0.8])
    assert "Spearman 1.00" in fig.layout.xaxis3.title.text  # reward == length: pure length gaming


def test_reward_model_panel_with_store_ceiling_and_explain():
    store = PreferenceStore(":memory:")
    for annotator, judgement in [("ana", "A"), ("bob", "A"), ("cy", "B")]:
        store.add("Say hi.", ["Hello there, friend!", "Go away."], judgement, annotator=annotator)
    panel = RewardModelPanel(length_reward, store, store=store)
    assert panel.ceiling == pytest.approx(1 / 3)  # one agreeing pair of annotators out of three
    html = panel.explain("Say hi.", f"Hello {XSS}")
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert "occlusion" in html
    assert "Reward model on" in panel._repr_mimebundle_()["text/plain"]
    assert "enter a prompt" in panel.explain("", "")


# ------------------------------------------------------------------ over-optimisation
def test_overoptimisation_figure_marks_the_gold_peak():
    stage = FakeStage()
    stage.step(30, progress=False)
    fig = overoptimisation_figure(stage)
    assert [t.name for t in fig.data] == ["proxy reward (RM)", "gold reward"]
    # gold = sqrt(kl) - 0.3 kl peaks at kl = 1/(4*0.09) ~ 2.8: step 14 (kl 2.8)
    peak = fig.layout.shapes[0].x0
    assert peak == pytest.approx(2.8)
    assert np.all(np.diff(fig.data[0].y) > 0)  # proxy keeps rising
    assert overoptimisation_figure(stage.history, sqrt_kl=True).data[0].x[-1] == pytest.approx(math.sqrt(6.0))
    with pytest.raises(ValueError, match="RL stage"):
        overoptimisation_figure([{"loss/sft": 1.0}])


# ------------------------------------------------------------------ samples
def test_sample_viewer_steps_escaping_and_send_to_labeller():
    stage = FakeStage()
    stage.step(3, progress=False)
    stage._samples[3][0]["response"] = XSS
    labeller = PairLabeller(PreferenceStore(":memory:"))
    viewer = SampleViewer(stage, labeller=labeller, n=6)
    assert viewer.step_picker.options == (("1", 1), ("2", 2), ("3", 3))
    assert viewer.step_picker.value == 3
    assert "&lt;script&gt;" in viewer.table.value and "<script>" not in viewer.table.value
    assert "KL" in viewer.table.value and "reward" in viewer.table.value
    viewer.step_picker.value = 1
    assert "at step 1" in viewer.table.value
    added = viewer.send_to_labeller()
    assert added == labeller.queued + 1 and added >= 1
    assert labeller.current["policy_step"] == 1


def test_samples_table_empty():
    assert "No samples" in samples_table_html([])


def test_before_after_generates_and_sends_pairs(tiny_tok):
    from rlhf_lab.models.tiny import tiny_policy

    before, after = tiny_policy(tiny_tok, seed=0), tiny_policy(tiny_tok, seed=1)
    labeller = PairLabeller(PreferenceStore(":memory:"))
    view = BeforeAfter(
        before,
        after,
        tiny_tok,
        ["Review a film.", "Say hi."],
        labeller=labeller,
        reward=length_reward,
        names=("SFT", "PPO"),
        max_new_tokens=8,
    )
    assert [r["prompt"] for r in view.rows] == ["Review a film.", "Say hi."]
    assert all("reward_before" in r for r in view.rows)
    view.send(1)
    assert labeller.current["prompt"] == "Say hi."
    assert sorted(labeller.current["responses"]) == sorted([view.rows[1]["before"], view.rows[1]["after"]])
    assert "SFT:" in view._repr_mimebundle_()["text/plain"]


@pytest.mark.slow
def test_views_on_real_tiny_stages(tiny_lab):
    """The views against the lab's own RL and reward-model stages, not fakes."""
    from rlhf_lab.ui import Dashboard

    def reward(prompts, responses):
        return [float(len(r)) / 10 for r in responses]

    ppo = tiny_lab.rl(["Write a review.", "Say hi."], reward=reward, batch_size=4, max_new_tokens=6)
    dash = Dashboard(ppo)
    ppo.step(2, progress=False)
    dash.wait()
    assert dash.points("objective/kl")[0] == [1, 2]
    assert "Preference accuracy" not in dash.panels  # an RL stage gets the RL panels
    dash.sliders["beta"].value = 0.2
    assert ppo.config.beta == pytest.approx(0.2)

    labeller = tiny_lab.label()
    viewer = SampleViewer(ppo, labeller=labeller, n=4)
    assert [value for _, value in viewer.step_picker.options] == [1, 2]
    assert "Write a review." in viewer.table.value and "tokens" in viewer.table.value
    viewer.send_to_labeller()
    assert labeller.current is not None

    rm = tiny_lab.reward_model(PAIRS * 2)
    panel = RewardModelPanel(rm, PAIRS)
    assert 0.0 <= panel.accuracy <= 1.0 and len(panel.frame) == 3
    assert "occlusion" in panel.explain("p", "a great answer")
    panel.method.value = "integrated gradients"
    assert "integrated gradients" in panel.explain("p", "a great answer")
