"""Is the reward model any good, and is the policy gaming it?

    >>> from rlhf_lab.ui.diagnostics import RewardModelPanel, overoptimisation_figure
    >>> RewardModelPanel(rm, store.pairs(), store=store)    # accuracy vs ceiling, calibration, length, attribution
    >>> overoptimisation_figure(ppo)                         # proxy and gold reward against KL (Gao et al.)

The functions return plain plotly figures (and numbers) and are testable without a front-end;
`RewardModelPanel` puts them in one widget with a token-attribution box.

- Accuracy vs agreement ceiling: a reward model cannot beat the rate at which humans agree with
  each other on the same pairs; well below it means underfitting, "above" it means noise fitted.
- Calibration: P(chosen wins) = sigmoid(r_chosen - r_rejected) against how often it really does.
- Reward vs length: a strong correlation means length can be gamed (the policy pads answers).
- Over-optimisation: the proxy reward keeps rising with KL while the gold reward peaks and falls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import ipywidgets as W
import numpy as np
import pandas as pd

from rlhf_lab.attribution import as_score_fn, attribution_html, integrated_gradients, occlusion
from rlhf_lab.reward.evaluation import reliability_table
from rlhf_lab.ui.html import error_html


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def reliability(probs: Sequence[float], outcomes: Sequence[float], n_bins: int = 10) -> pd.DataFrame:
    """The bins of predicted P(chosen wins) that hold pairs: confidence (mean prediction), accuracy
    (observed rate), count. They are `rlhf_lab.reward.evaluation.reliability_table`'s bins, so the
    panel and the RM stage's `rm/val_ece` agree.
    """
    table = reliability_table(probs, outcomes, n_bins=n_bins).rename(columns={"frequency": "accuracy"})
    table = table[table["count"] > 0]  # an empty bin has no point to plot
    return table[["confidence", "accuracy", "count"]].reset_index(drop=True)


def length_correlation(lengths: Sequence[float], rewards: Sequence[float]) -> dict[str, float]:
    """Pearson and Spearman correlation of reward with response length (nan with < 3 points)."""
    from scipy import stats

    x, y = np.asarray(lengths, dtype=float), np.asarray(rewards, dtype=float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"pearson": float("nan"), "spearman": float("nan"), "n": len(x)}
    return {
        "pearson": float(stats.pearsonr(x, y)[0]),
        "spearman": float(stats.spearmanr(x, y)[0]),
        "n": len(x),
    }


def evaluate_pairs(reward: Any, pairs: Any, *, tokenizer: Any = None) -> pd.DataFrame:
    """Score every pair: one row per pair with r_chosen, r_rejected, margin, p_chosen, target, lengths.

    `pairs` is anything `rlhf_lab.reward.pairs.as_pair_records` reads (a store, a DataFrame, a list).
    Lengths are in tokens with a tokenizer, in words otherwise.
    """
    from rlhf_lab.reward.pairs import as_pair_records

    records = as_pair_records(pairs)
    score = as_score_fn(reward)
    prompts = [r.prompt for r in records for _ in (0, 1)]
    texts = [t for r in records for t in (r.chosen, r.rejected)]
    values = np.asarray(score(prompts, texts), dtype=float).reshape(-1, 2) if records else np.zeros((0, 2))

    def length(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"]) if tokenizer else len(text.split())

    frame = pd.DataFrame(
        {
            "prompt": [r.prompt for r in records],
            "chosen": [r.chosen for r in records],
            "rejected": [r.rejected for r in records],
            "target": [r.target for r in records],
            "r_chosen": values[:, 0],
            "r_rejected": values[:, 1],
            "len_chosen": [length(r.chosen) for r in records],
            "len_rejected": [length(r.rejected) for r in records],
        }
    )
    frame["margin"] = frame["r_chosen"] - frame["r_rejected"]
    frame["p_chosen"] = _sigmoid(frame["margin"].to_numpy())
    return frame


def pair_accuracy(frame: pd.DataFrame) -> float:
    """Share of clear pairs (target > 0.5) the reward model orders like the labels."""
    clear = frame[frame["target"] > 0.5]
    return float((clear["margin"] > 0).mean()) if len(clear) else float("nan")


def agreement_ceiling(store: Any) -> float | None:
    """Observed inter-annotator agreement on the store's multiply-labelled pairs (None if there are none)."""
    from rlhf_lab.agreement import store_agreement

    value = store_agreement(store).get("percent_agreement")
    return float(value) if value is not None and math.isfinite(value) else None


def calibration_table(frame: pd.DataFrame, n_bins: int = 10) -> pd.DataFrame:
    """The reliability table of `evaluate_pairs` rows, each pair counted in both orders.

    Pairs are stored chosen-first, so in chosen-first order alone the observed rate is near 1 in
    every bin. Counting (margin, target) and (-margin, 1 - target), as the ECE does
    (`rlhf_lab.reward.evaluation.both_orders`), is showing A and B in either order.
    """
    from rlhf_lab.reward.evaluation import both_orders

    margins, targets = both_orders(
        frame["margin"].to_numpy(dtype=float), frame["target"].to_numpy(dtype=float)
    )
    return reliability(_sigmoid(margins), targets, n_bins=n_bins)


def reward_model_figure(frame: pd.DataFrame, *, ceiling: float | None = None, n_bins: int = 10):
    """Three panels: accuracy vs ceiling, reliability diagram (both orders), reward vs response length."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    accuracy = pair_accuracy(frame)
    table = calibration_table(frame, n_bins=n_bins)
    lengths = np.concatenate([frame["len_chosen"], frame["len_rejected"]])
    rewards = np.concatenate([frame["r_chosen"], frame["r_rejected"]])
    corr = length_correlation(lengths, rewards)
    fig = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=("Accuracy vs agreement ceiling", "Calibration", "Reward vs response length"),
        horizontal_spacing=0.08,
    )
    names, values = ["reward model"], [accuracy]
    if ceiling is not None:
        names.append("annotator agreement")
        values.append(ceiling)
    fig.add_trace(
        go.Bar(
            x=names,
            y=values,
            text=[f"{v:.2f}" for v in values],
            marker_color=["#1f77b4", "#7f7f7f"][: len(values)],
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#999"}, name="perfect"),
        row=1,
        col=2,
    )
    fig.add_trace(
        go.Scatter(
            x=table["confidence"],
            y=table["accuracy"],
            mode="lines+markers",
            marker={"size": 4 + 10 * np.sqrt(table["count"] / max(table["count"].max(), 1))},
            name="reward model",
            text=[f"n={c}" for c in table["count"]],
        ),
        row=1,
        col=2,
    )
    fig.add_trace(
        go.Scatter(
            x=lengths, y=rewards, mode="markers", marker={"size": 5, "opacity": 0.6}, name="responses"
        ),
        row=1,
        col=3,
    )
    fig.update_yaxes(range=[0, 1.05], title_text="accuracy", row=1, col=1)
    fig.update_xaxes(range=[-0.05, 1.05], title_text="predicted P(chosen wins)", row=1, col=2)
    fig.update_yaxes(range=[-0.05, 1.05], title_text="observed P(chosen wins)", row=1, col=2)
    fig.update_xaxes(
        title_text=f"length: Pearson r {corr['pearson']:.2f}, Spearman {corr['spearman']:.2f}", row=1, col=3
    )
    fig.update_yaxes(title_text="reward", row=1, col=3)
    fig.update_layout(
        width=960,
        height=380,
        showlegend=False,
        template="plotly_white",
        margin={"l": 50, "r": 20, "t": 40, "b": 60},
    )
    return fig


def _history(source: Any) -> pd.DataFrame:
    if hasattr(source, "history"):
        return source.history
    if isinstance(source, pd.DataFrame):
        return source
    return pd.DataFrame(list(source))


def overoptimisation_figure(source: Any, *, sqrt_kl: bool = False):
    """Proxy (`objective/scores`) and gold (`objective/gold_scores`) reward against `objective/kl`.

    `source`: an RL stage, its history DataFrame or a list of metric rows. With `sqrt_kl=True` the
    x axis is sqrt(KL), the distance Gao et al. (2022) fit their curves against.
    """
    import plotly.graph_objects as go

    history = _history(source)
    if "objective/kl" not in history or "objective/scores" not in history:
        raise ValueError("the history has no objective/kl and objective/scores: is this an RL stage?")
    kl = history["objective/kl"].astype(float)
    x = np.sqrt(kl.clip(lower=0)) if sqrt_kl else kl  # the k1 estimate can dip below 0 early on
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(x=x, y=history["objective/scores"], mode="lines+markers", name="proxy reward (RM)")
    )
    if "objective/gold_scores" in history and history["objective/gold_scores"].notna().any():
        gold = history["objective/gold_scores"].astype(float)
        fig.add_trace(go.Scatter(x=x, y=gold, mode="lines+markers", name="gold reward", yaxis="y2"))
        best = int(np.nanargmax(gold.to_numpy()))
        fig.add_vline(x=float(x.iloc[best]), line_dash="dot", line_color="#999", annotation_text="gold peak")
    fig.update_layout(
        title="Over-optimisation: reward against KL from the reference",
        xaxis_title="sqrt(KL) (nats^0.5)" if sqrt_kl else "KL to reference (nats/sequence)",
        yaxis={"title": "proxy reward"},
        yaxis2={"title": "gold reward", "overlaying": "y", "side": "right", "showgrid": False},
        template="plotly_white",
        height=380,
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


class RewardModelPanel:
    """Accuracy vs ceiling, calibration, reward vs length, and a token-attribution box, in one widget.

    `reward`: a reward-model stage, a scorer function or a judge (see attribution.as_score_fn).
    `pairs`: held-out pairs (a store, DataFrame or list). `ceiling`: the annotators' agreement,
    computed from `store` when not given. For integrated gradients pass `model` and `tokenizer`.
    """

    def __init__(
        self,
        reward: Any,
        pairs: Any,
        *,
        store: Any = None,
        ceiling: float | None = None,
        tokenizer: Any = None,
        model: Any = None,
    ) -> None:
        import plotly.graph_objects as go

        self.reward = reward
        self.model = model if model is not None else getattr(reward, "model", None)
        self.tokenizer = tokenizer if tokenizer is not None else getattr(reward, "tokenizer", None)
        self.frame = evaluate_pairs(reward, pairs, tokenizer=self.tokenizer)
        if ceiling is None and store is not None:
            ceiling = agreement_ceiling(store)
        self.ceiling = ceiling
        self.accuracy = pair_accuracy(self.frame)
        self.figure = go.FigureWidget(reward_model_figure(self.frame, ceiling=ceiling))

        first = self.frame.iloc[0] if len(self.frame) else None
        self.prompt_box = W.Text(
            value="" if first is None else first["prompt"], description="prompt", layout=W.Layout(width="95%")
        )
        self.response_box = W.Textarea(
            value="" if first is None else first["chosen"],
            description="response",
            layout=W.Layout(width="95%", height="70px"),
        )
        methods = ["occlusion (words)"]
        if self.model is not None and self.tokenizer is not None:
            methods.append("integrated gradients")
        self.method = W.Dropdown(options=methods, description="method")
        self.explain_button = W.Button(description="Explain score", icon="search", button_style="primary")
        self.explain_button.on_click(lambda _: self.explain())
        self.attribution = W.HTML()
        self.widget = W.VBox(
            [
                self.figure,
                W.HTML("<b>Which words drive the score?</b>"),
                self.prompt_box,
                self.response_box,
                W.HBox([self.method, self.explain_button]),
                self.attribution,
            ]
        )

    def explain(self, prompt: str | None = None, response: str | None = None) -> str:
        """Attribute the reward of one response to its words (or tokens) and show it; returns the HTML."""
        prompt = self.prompt_box.value if prompt is None else prompt
        response = self.response_box.value if response is None else response
        try:
            if not prompt.strip() or not response.strip():
                raise ValueError("enter a prompt and a response to explain")
            if self.method.value == "integrated gradients":
                attr = integrated_gradients(self.model, self.tokenizer, prompt, response)
            else:
                attr = occlusion(self.reward, prompt, response)
            self.attribution.value = attribution_html(attr)
        except Exception as exc:
            self.attribution.value = error_html(exc)
        return self.attribution.value

    def summary(self) -> str:
        corr = length_correlation(
            np.concatenate([self.frame["len_chosen"], self.frame["len_rejected"]]),
            np.concatenate([self.frame["r_chosen"], self.frame["r_rejected"]]),
        )
        ceiling = "n/a" if self.ceiling is None else f"{self.ceiling:.3f}"
        return (
            f"Reward model on {len(self.frame)} pairs: accuracy {self.accuracy:.3f} (agreement ceiling {ceiling}); "
            f"reward~length Pearson {corr['pearson']:.2f}, Spearman {corr['spearman']:.2f}"
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        bundle = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        bundle["text/plain"] = self.summary()
        return bundle
