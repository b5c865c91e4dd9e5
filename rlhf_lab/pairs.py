"""Deprecated: kept for one release; import from `rlhf_lab.reward.pairs`."""

from rlhf_lab.moved import warn_moved
from rlhf_lab.reward.pairs import PairRecord, PreferencePair, TrainingPair, as_pair_records, read_pairs

warn_moved(__name__, "rlhf_lab.reward.pairs")

__all__ = ["PairRecord", "PreferencePair", "TrainingPair", "as_pair_records", "read_pairs"]
