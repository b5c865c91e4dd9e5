"""Reading what the policy writes: samples per step, and a before/after comparison.

    >>> from rlhf_lab.ui import SampleViewer, BeforeAfter
    >>> SampleViewer(ppo, labeller=labeller)          # prompt, response, reward, KL for any step
    >>> viewer.send_to_labeller()                     # PPO: one sample per prompt, a second is generated
    >>> BeforeAfter(lab.snapshots["sft"], lab.policy, lab.tokenizer, prompts, labeller=labeller)

Both views only read: `stage.samples(...)` and `rlhf_lab.generation.generate`. A button sends
what is on screen to a `PairLabeller` (`labeller.add`), closing the loop from policy output
back to human judgement. Stages with one response per prompt (PPO) get a second response per
prompt from the stage's current policy, so they yield pairs too. All text is HTML-escaped:
model output never becomes markup.
"""

from __future__ import annotations

import html
import random
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as W

from rlhf_lab.active import Generate, pairs_from_samples, policy_generator
from rlhf_lab.ui.html import BOX_STYLE, error_html, heading_html, prompt_html, text_html

# sample keys shown as number columns (RL stages: score, gold_score, kl, length)
SCORE_KEYS = (
    ("reward", "reward"),
    ("score", "reward"),
    ("gold", "gold"),
    ("gold_score", "gold"),
    ("kl", "KL"),
    ("length", "tokens"),
)
TABLE_CSS = (
    "<style>.rl-samples{border-collapse:collapse;width:100%;font-size:var(--jp-ui-font-size1,13px)}"
    ".rl-samples th{text-align:left;color:var(--jp-ui-font-color2);font-weight:600;"
    "border-bottom:1px solid var(--jp-border-color2);padding:4px 8px}"
    ".rl-samples td{vertical-align:top;padding:4px 8px;border-bottom:1px solid var(--jp-border-color3);"
    "white-space:pre-wrap;overflow-wrap:anywhere}"
    ".rl-samples td.num{font-variant-numeric:tabular-nums;white-space:nowrap;text-align:right}</style>"
)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f'<td class="num">{value:+.3f}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value}</td>'
    return f"<td>{html.escape('' if value is None else str(value))}</td>"


def samples_table_html(samples: Sequence[dict]) -> str:
    """An escaped HTML table of samples: prompt, response and whichever of reward/gold/KL they carry."""
    if not samples:
        return "<i>No samples for this step.</i>"
    columns = [(key, title) for key, title in SCORE_KEYS if any(key in s for s in samples)]
    head = "".join(f"<th>{t}</th>" for t in ("prompt", "response", *(title for _, title in columns)))
    rows = []
    for s in samples:
        cells = [_cell(s.get("prompt")), _cell(s.get("response"))]
        cells += [_cell(_number(s.get(key))) for key, _ in columns]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f'{TABLE_CSS}<table class="rl-samples"><tr>{head}</tr>{"".join(rows)}</table>'


def _number(value: Any) -> Any:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _show_errors(status: W.HTML, fn: Callable[[], Any]) -> None:
    """Run a button's action; an error becomes a one-line message in `status`, not a traceback."""
    try:
        fn()
    except Exception as exc:
        status.value = error_html(exc)


class SampleViewer:
    """Samples of a stage at any step (a dropdown over the steps it has samples for).

    `generate(prompt, n)` completes prompts with fewer than two distinct responses before they are
    sent to the labeller; by default it samples the stage's current policy (`policy_generator`).
    Pass `generate=None` to send only prompts that already have two responses.
    """

    def __init__(
        self,
        stage: Any,
        *,
        labeller: Any = None,
        n: int = 8,
        steps: Sequence[int] | None = None,
        generate: Generate | None | str = "policy",
    ) -> None:
        self.stage, self.labeller, self.n = stage, labeller, n
        self.generate = policy_generator(stage) if generate == "policy" else generate
        self._steps = list(steps) if steps is not None else None
        self.step_picker = W.Dropdown(description="step", layout=W.Layout(width="160px"))
        self.step_picker.style.description_width = "34px"
        self.refresh_button = W.Button(description="Refresh", icon="refresh", layout=W.Layout(width="auto"))
        self.send_button = W.Button(
            description="Send pairs to labeller",
            icon="share",
            layout=W.Layout(width="auto", display="" if labeller is not None else "none"),
        )
        self.table = W.HTML()
        self.status = W.HTML()
        self.refresh_button.on_click(lambda _: self._guard(self.refresh))
        self.send_button.on_click(lambda _: self._guard(self.send_to_labeller))
        self.step_picker.observe(lambda change: self._guard(self.show), "value")
        self.widget = W.VBox(
            [W.HBox([self.step_picker, self.refresh_button, self.send_button]), self.status, self.table]
        )
        self.refresh()

    def available_steps(self) -> list[int]:
        if self._steps is not None:
            return list(self._steps)
        steps = getattr(self.stage, "sample_steps", None)
        if steps is None and hasattr(self.stage, "samples_dataframe"):  # RL stages keep recent steps only
            frame = self.stage.samples_dataframe()
            steps = [] if frame.empty or "step" not in frame else sorted(frame["step"].unique())
        if steps is None:
            history = self.stage.history
            steps = [] if history.empty or "step" not in history else history["step"].tolist()
        return [int(s) for s in steps]

    def refresh(self) -> None:
        """Re-read the steps available and show the latest."""
        steps = self.available_steps()
        self.step_picker.options = [(str(s), s) for s in steps]
        if steps:
            self.step_picker.value = steps[-1]
        self.show()

    def samples(self, step: int | None = None) -> list[dict]:
        step = self.step_picker.value if step is None else step
        if step is None:
            return list(self.stage.samples(self.n))
        try:
            return list(self.stage.samples(self.n, step=step))
        except TypeError:  # a stage that keeps only its latest samples
            return list(self.stage.samples(self.n))
        except KeyError:  # a step whose samples were not kept
            return []

    def show(self) -> None:
        self.table.value = samples_table_html(self.samples())
        self.status.value = ""

    def send_to_labeller(self) -> int:
        """Group this step's samples by prompt into pairs and append them to the labeller's queue.

        A prompt with one response gets a second from `self.generate` (the current policy by default).
        """
        if self.labeller is None:
            raise ValueError("no labeller: SampleViewer(stage, labeller=...)")
        items = pairs_from_samples(self.samples(), generate=self.generate, policy_step=self.step_picker.value)
        added = self.labeller.add(items)
        self.status.value = html.escape(f"Sent {added} pair(s) to the labeller.")
        return added

    def _guard(self, fn) -> None:
        _show_errors(self.status, fn)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        bundle = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        bundle["text/plain"] = f"SampleViewer: step {self.step_picker.value}, {len(self.samples())} samples"
        return bundle


def compare_models(
    before: Any,
    after: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    seed: int = 0,
    **generate_kwargs: Any,
) -> list[dict]:
    """Rows {prompt, before, after}: both models answer the same prompts with the same sampling seed."""
    from rlhf_lab.generation import generate

    prompts = list(prompts)
    first = generate(before, tokenizer, prompts, seed=seed, **generate_kwargs)
    second = generate(after, tokenizer, prompts, seed=seed, **generate_kwargs)
    return [{"prompt": p, "before": a, "after": b} for p, a, b in zip(prompts, first, second)]


class BeforeAfter:
    """A snapshot (e.g. the SFT model) and the current policy side by side on the same prompts."""

    def __init__(
        self,
        before: Any,
        after: Any,
        tokenizer: Any,
        prompts: Sequence[str],
        *,
        labeller: Any = None,
        reward: Any = None,
        names: tuple[str, str] = ("before", "after"),
        seed: int = 0,
        **generate_kwargs: Any,
    ) -> None:
        self.labeller, self.names = labeller, names
        self.rows = compare_models(before, after, tokenizer, prompts, seed=seed, **generate_kwargs)
        if reward is not None:
            from rlhf_lab.attribution import as_score_fn

            score = as_score_fn(reward)
            prompts2 = [r["prompt"] for r in self.rows for _ in (0, 1)]
            texts = [t for r in self.rows for t in (r["before"], r["after"])]
            values = score(prompts2, texts)
            for i, row in enumerate(self.rows):
                row["reward_before"], row["reward_after"] = values[2 * i], values[2 * i + 1]
        self._rng = random.Random(seed)
        self.status = W.HTML()
        self.widget = W.VBox([self.status, *[self._row_widget(i) for i in range(len(self.rows))]])

    def _row_widget(self, i: int) -> W.Widget:
        row = self.rows[i]

        def column(name: str, key: str) -> str:
            reward = row.get(f"reward_{key}")
            score = "" if reward is None else f" · reward {reward:+.3f}"
            return (
                f'<div style="flex:1;min-width:0;{BOX_STYLE}">{heading_html(name + score)}'
                f"{text_html(row[key])}</div>"
            )

        columns = column(self.names[0], "before") + column(self.names[1], "after")
        text = W.HTML(
            f'{prompt_html(row["prompt"])}<div style="display:flex;gap:8px">{columns}</div>',
            layout=W.Layout(width="100%"),
        )
        send = W.Button(
            description="Send pair to labeller",
            icon="share",
            layout=W.Layout(width="auto", display="" if self.labeller is not None else "none"),
        )
        send.on_click(lambda _: self._guard(lambda: self.send(i)))
        return W.VBox([text, send])

    def send(self, i: int) -> None:
        """Append row i as a pair (in a random order, so position does not reveal the model) to the labeller."""
        if self.labeller is None:
            raise ValueError("no labeller: BeforeAfter(..., labeller=...)")
        row = self.rows[i]
        responses = [row["before"], row["after"]]
        self._rng.shuffle(responses)
        self.labeller.add([{"prompt": row["prompt"], "responses": responses, "source": "before/after"}])
        self.status.value = html.escape(f"Sent pair {i + 1} to the labeller.")

    def _guard(self, fn) -> None:
        _show_errors(self.status, fn)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        bundle = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        lines = [
            f"{r['prompt']!r}\n  {self.names[0]}: {r['before']!r}\n  {self.names[1]}: {r['after']!r}"
            for r in self.rows
        ]
        bundle["text/plain"] = "\n".join(lines)
        return bundle
