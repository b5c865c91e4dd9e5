"""Notebook views of the lab: they observe stages and the store and call their public methods.

    >>> from rlhf_lab.ui import PairLabeller, Dashboard, SampleViewer, BeforeAfter, Playground
    >>> labeller = PairLabeller(lab.store, items, annotator="ana")
    >>> Dashboard(sft, rm, ppo)

No training logic lives here. Names are imported lazily (module-level `__getattr__`, as in
`rlhf_lab/__init__`), so `from rlhf_lab.ui import PairLabeller` loads anywidget but not plotly.
Item sources and active learning are core (`rlhf_lab.active`), so is token attribution
(`rlhf_lab.attribution`); both are re-exported here for convenience. The front-end of the custom
widgets (plain ES modules + CSS) is in the top-level `widgets/` folder, shipped as `rlhf_lab.widgets`.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "ActiveLearningSource": "rlhf_lab.active",
    "StageSource": "rlhf_lab.active",
    "as_items": "rlhf_lab.active",
    "items_from_file": "rlhf_lab.active",
    "pairs_from_samples": "rlhf_lab.active",
    "Attribution": "rlhf_lab.attribution",
    "attribution_html": "rlhf_lab.attribution",
    "integrated_gradients": "rlhf_lab.attribution",
    "occlusion": "rlhf_lab.attribution",
    "Dashboard": "rlhf_lab.ui.dashboard",
    "bar_panels": "rlhf_lab.ui.charts",
    "RewardModelPanel": "rlhf_lab.ui.diagnostics",
    "overoptimisation_figure": "rlhf_lab.ui.diagnostics",
    "reward_model_figure": "rlhf_lab.ui.diagnostics",
    "FacilitatorView": "rlhf_lab.ui.facilitator",
    "PairLabeller": "rlhf_lab.ui.labeller",
    "Playground": "rlhf_lab.ui.playground",
    "BeforeAfter": "rlhf_lab.ui.samples",
    "SampleViewer": "rlhf_lab.ui.samples",
    "compare_models": "rlhf_lab.ui.samples",
    "until_done": "rlhf_lab.ui.dashboard",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'rlhf_lab.ui' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
