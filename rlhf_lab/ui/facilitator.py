"""The facilitator's view of a workshop: who labelled how much, how far they agree, one-click retrain.

    >>> from rlhf_lab.ui.facilitator import FacilitatorView
    >>> view = FacilitatorView(lab.store, retrain=lambda: lab.reward_model().fit(), refresh_s=5)
    >>> view                      # counts per participant, Fleiss' kappa, Krippendorff's alpha, [Retrain]

It reads the shared preference store (every participant's kernel writes into the same SQLite file)
and refreshes on a timer. `retrain` is any callable that trains a reward model on the store's
current labels and returns a summary dict (e.g. `RewardModelStage.fit`); the view runs it in a
background thread and shows its held-out accuracy beside the agreement ceiling.
"""

from __future__ import annotations

import html
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from rlhf_lab.agreement import store_agreement

_REFRESH_FAILED = "refresh failed: "


def _num(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}"
    return html.escape(str(value))


class FacilitatorView:
    """Live counts per participant, agreement over the shared pairs, and a retrain button."""

    def __init__(
        self,
        store: Any,
        *,
        retrain: Callable[[], dict[str, Any]] | None = None,
        refresh_s: float | None = 5.0,
    ) -> None:
        self.store = store
        self.retrain_fn = retrain
        self.last_summary: dict[str, Any] | None = None
        self.last_fit: dict[str, Any] | None = None
        self.table = widgets.HTML()
        self.agreement = widgets.HTML()
        self.status = widgets.Label("")
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.retrain_button = widgets.Button(
            description="Retrain reward model", button_style="primary", disabled=retrain is None
        )
        self.refresh_button.on_click(lambda _: self.refresh())
        self.retrain_button.on_click(lambda _: self.retrain())
        self.widget = widgets.VBox(
            [
                widgets.HTML("<b>Workshop: shared preference store</b>"),
                self.table,
                self.agreement,
                widgets.HBox([self.refresh_button, self.retrain_button]),
                self.status,
            ]
        )
        self._fit_done = threading.Event()  # set = no retrain in flight (waits use it: see progress.py)
        self._fit_done.set()
        self._stop = threading.Event()
        self.refresh()
        if refresh_s:
            self._ticker = threading.Thread(target=self._tick, args=(refresh_s,), daemon=True)
            self._ticker.start()

    def _tick(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                self.refresh()
            except Exception as exc:  # a locked or moved file must not kill the view
                self.status.value = f"{_REFRESH_FAILED}{exc}"
            else:
                if self.status.value.startswith(_REFRESH_FAILED):  # the store is back: say so by clearing it
                    self.status.value = ""

    def close(self) -> None:
        self._stop.set()
        self.widget.close()

    def refresh(self) -> dict[str, Any]:
        """Re-read the store; returns the agreement summary it shows."""
        counts = self.store.count_by_annotator()
        summary = store_agreement(self.store)
        self.last_summary = {"counts": counts, **summary}
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td style='text-align:right'>{n}</td>"
            f"<td style='text-align:right'>{_num(summary['annotator_agreement'].get(name, float('nan')))}</td></tr>"
            for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        )
        self.table.value = (
            "<table><tr><th>participant</th><th>labels</th><th>agrees with majority</th></tr>"
            f"{rows or '<tr><td colspan=3>no labels yet</td></tr>'}</table>"
        )
        self.agreement.value = (
            f"{summary['n_items']} items labelled by 2+ people; agreement {_num(summary['percent_agreement'])}, "
            f"Fleiss' kappa {_num(summary['fleiss_kappa'])}, Krippendorff's alpha "
            f"{_num(summary['krippendorff_alpha'])}, unanimous {_num(summary['fraction_unanimous'])}"
        )
        return self.last_summary

    def retrain(self, wait: bool = False) -> None:
        """Retrain the reward model on everyone's labels in a background thread (one at a time)."""
        if self.retrain_fn is None or not self._fit_done.is_set():
            return
        self.retrain_button.disabled = True
        self.status.value = "retraining on all labels..."

        def work() -> None:
            started = time.perf_counter()
            try:
                self.last_fit = self.retrain_fn() or {}
                accuracy = self.last_fit.get("val_accuracy", self.last_fit.get("accuracy"))
                ceiling = (self.last_summary or {}).get("percent_agreement")
                self.status.value = (
                    f"reward model retrained in {time.perf_counter() - started:.1f} s: held-out accuracy "
                    f"{_num(accuracy) if accuracy is not None else 'n/a'} (agreement ceiling {_num(ceiling)})"
                )
            except Exception as exc:
                self.status.value = f"retrain failed: {type(exc).__name__}: {exc}"
            finally:
                self.retrain_button.disabled = False
                self._fit_done.set()

        self._fit_done.clear()
        threading.Thread(target=work, daemon=True).start()
        if wait:
            self._fit_done.wait()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = self.widget._repr_mimebundle_(**kwargs)
        summary = self.last_summary or {}
        bundle["text/plain"] = (
            f"FacilitatorView: {sum(summary.get('counts', {}).values())} labels from "
            f"{len(summary.get('counts', {}))} participants; Fleiss' kappa {_num(summary.get('fleiss_kappa', float('nan')))}"
        )
        return bundle
