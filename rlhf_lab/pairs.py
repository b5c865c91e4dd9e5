"""Deprecated: kept for one release; import from `rlhf_lab.reward.pairs`."""

import warnings

from rlhf_lab.reward.pairs import PairRecord, PreferencePair, TrainingPair, as_pair_records, read_pairs

warnings.warn(
    "rlhf_lab.pairs is deprecated and will be removed; import from rlhf_lab.reward.pairs.",
    DeprecationWarning,
    stacklevel=2,  # the importer's line (warnings skips importlib's frames)
)

__all__ = ["PairRecord", "PreferencePair", "TrainingPair", "as_pair_records", "read_pairs"]
