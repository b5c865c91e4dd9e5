"""rlhf-lab: the whole RLHF loop, step by step, in a notebook.

>>> from rlhf_lab import Lab
>>> lab = Lab.from_preset("tiny")
"""

from rlhf_lab.lab import Lab
from rlhf_lab.models.presets import PRESETS

__all__ = ["Lab", "PRESETS"]
__version__ = "0.1.0"
