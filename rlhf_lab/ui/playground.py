"""Try your own prompt: several models answer it side by side, scored by a reward model and a judge.

    >>> from rlhf_lab.ui import Playground
    >>> Playground({"SFT": lab.snapshots["sft"], "PPO": lab.policy}, lab.tokenizer, reward=rm, gold=judge)
    >>> lab.playground(reward=rm, gold=judge)     # every snapshot beside the current policy

Every model answers with the same sampling seed, so a difference between columns comes from the
weights, not from the luck of the draw; each click draws new samples. It only reads the models (as
`BeforeAfter` does); while a stage trains one of them in the background, its answer waits for the
current step to end (`rlhf_lab.generation.model_lock`), so it comes from the weights between two steps.
Model output is HTML-escaped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ipywidgets as W

from rlhf_lab.attribution import as_score_fn
from rlhf_lab.generation import generate, model_lock
from rlhf_lab.ui.html import BOX_STYLE, error_html, heading_html, prompt_html, text_html

MAX_SAMPLES = 8


def is_training(model: Any) -> bool:
    """Whether a stage's step holds `model` in another thread now (sampling from it would wait)."""
    lock = model_lock(model)
    if lock.acquire(blocking=False):
        lock.release()
        return False
    return True


class Playground:
    """A prompt box and an Answer button; one column per model, `samples` answers each."""

    def __init__(
        self,
        models: Mapping[str, Any],
        tokenizer: Any,
        *,
        reward: Any = None,
        gold: Any = None,
        samples: int = 2,
        prompt: str = "",
        seed: int = 0,
        **generate_kwargs: Any,
    ) -> None:
        if not models:
            raise ValueError("Playground needs at least one model: {name: model}.")
        if not 1 <= samples <= MAX_SAMPLES:
            raise ValueError(f"samples must be between 1 and {MAX_SAMPLES}, got {samples}.")
        self.models, self.tokenizer, self.generate_kwargs = dict(models), tokenizer, generate_kwargs
        # "reward": the reward model's opinion; "gold": the judge's (rlhf_lab.raters), where given
        self.scorers = {
            key: as_score_fn(obj) for key, obj in (("reward", reward), ("gold", gold)) if obj is not None
        }
        self.seed, self.rows, self.shown_prompt = seed, [], ""
        # continuous_update=False: the text reaches the kernel once, when the box loses focus, which a
        # click on Answer does first. Synced per keystroke, the last keys can queue behind ipywidgets'
        # message throttle while the button's click (a custom message, never queued) overtakes them,
        # and the kernel answers a prompt cut short.
        self.prompt = W.Textarea(
            value=prompt,
            placeholder="Type a prompt, then press Answer",
            continuous_update=False,
            layout=W.Layout(width="100%"),
        )
        self.samples = W.BoundedIntText(
            value=samples, min=1, max=MAX_SAMPLES, description="answers each", layout=W.Layout(width="170px")
        )
        self.samples.style.description_width = "90px"
        self.button = W.Button(description="Answer", icon="play", button_style="primary")
        self.button.on_click(lambda _: self._click())
        self.status = W.HTML()
        self.results = W.HTML()
        self.results.add_class("rl-playground-results")
        self.widget = W.VBox([self.prompt, W.HBox([self.button, self.samples]), self.status, self.results])
        self.widget.add_class("rl-playground")

    def answer(self, prompt: str | None = None) -> list[dict[str, Any]]:
        """Answers to `prompt` (default: the text box's) from every model, scored; also shown below.

        Returns one row per answer: {"model", "response", and "reward" / "gold" where given}.
        """
        prompt = self.prompt.value if prompt is None else prompt
        if not prompt.strip():
            raise ValueError("Type a prompt first.")
        n = int(self.samples.value)
        rows: list[dict[str, Any]] = []
        for name, model in self.models.items():
            texts = generate(model, self.tokenizer, [prompt] * n, seed=self.seed, **self.generate_kwargs)
            rows += [{"model": name, "response": text} for text in texts]
        for key, score in self.scorers.items():
            for row, value in zip(rows, score([prompt] * len(rows), [r["response"] for r in rows])):
                row[key] = value
        self.seed += 1  # the next click draws new samples (still one seed for every model)
        self.rows, self.shown_prompt = rows, prompt
        self.results.value = self._html(prompt, rows)
        return rows

    def _click(self) -> None:
        # Disabled while it works: a second click during a slow generation would queue a second run.
        self.button.disabled = True
        training = any(is_training(model) for model in self.models.values())
        self.status.value = "Answering after the current training step ..." if training else "Answering ..."
        try:
            self.answer()
            self.status.value = ""
        except Exception as exc:  # shown as one line under the box, not a traceback
            self.status.value = error_html(exc)
        finally:
            self.button.disabled = False

    def _html(self, prompt: str, rows: list[dict[str, Any]]) -> str:
        columns = []
        for name in self.models:
            cards = "".join(self._card(row) for row in rows if row["model"] == name)
            columns.append(f'<div style="flex:1;min-width:0">{heading_html(name)}{cards}</div>')
        return f'{prompt_html(prompt)}<div style="display:flex;gap:8px">{"".join(columns)}</div>'

    def _card(self, row: dict[str, Any]) -> str:
        scores = " · ".join(f"{key} {row[key]:+.3f}" for key in self.scorers)
        footer = (
            f'<div style="font-size:11px;color:var(--jp-ui-font-color2)">{scores}</div>' if scores else ""
        )
        style = f"{BOX_STYLE};margin-top:4px"
        return f'<div class="rl-playground-card" style="{style}">{text_html(row["response"])}{footer}</div>'

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        bundle = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        lines = [f"Playground: {', '.join(self.models)}; type a prompt and press Answer"]
        if self.rows:  # what a static copy of the notebook shows: the last answers, as text
            lines.append(repr(self.shown_prompt))
            for row in self.rows:
                scores = ", ".join(f"{key} {row[key]:+.3f}" for key in self.scorers)
                lines.append(f"  {row['model']}: {row['response']!r}" + (f" ({scores})" if scores else ""))
        bundle["text/plain"] = "\n".join(lines)
        return bundle
