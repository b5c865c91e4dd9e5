"""Notebook views of the lab: they observe stages and the store and call their public methods.

    >>> from rlhf_lab.ui import PairLabeller, Dashboard, SampleViewer, BeforeAfter, RewardModelPanel
    >>> labeller = PairLabeller(lab.store, items, annotator="ana")
    >>> Dashboard(sft, rm, ppo)

No training logic lives here. The front-end of the custom widgets (plain ES modules + CSS) is in
the top-level `widgets/` folder, shipped as `rlhf_lab.widgets`.
"""

from rlhf_lab.ui.attribution import Attribution, attribution_html, integrated_gradients, occlusion
from rlhf_lab.ui.dashboard import Dashboard
from rlhf_lab.ui.diagnostics import RewardModelPanel, overoptimisation_figure, reward_model_figure
from rlhf_lab.ui.facilitator import FacilitatorView
from rlhf_lab.ui.labeller import PairLabeller
from rlhf_lab.ui.queue import ActiveLearningSource, StageSource, as_items, items_from_file, pairs_from_samples
from rlhf_lab.ui.samples import BeforeAfter, SampleViewer, compare_models

__all__ = [
    "ActiveLearningSource",
    "Attribution",
    "BeforeAfter",
    "Dashboard",
    "FacilitatorView",
    "PairLabeller",
    "RewardModelPanel",
    "SampleViewer",
    "StageSource",
    "as_items",
    "attribution_html",
    "compare_models",
    "integrated_gradients",
    "items_from_file",
    "occlusion",
    "overoptimisation_figure",
    "pairs_from_samples",
    "reward_model_figure",
]
