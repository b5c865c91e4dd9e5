"""Deprecated: kept for one release; import from `rlhf_lab.reward` (stage, scorer, ensemble, pairs).

The reward-model code now lives in rlhf_lab/reward/: `reward.stage` (RewardModelStage),
`reward.config` (RMConfig), `reward.scorer` (RewardScorer, PairScoring), `reward.ensemble`
(RewardEnsemble), `reward.losses` (pairwise_loss) and `reward.pairs` (read_pairs, prompt_unit).
"""

from rlhf_lab.moved import warn_moved
from rlhf_lab.reward.config import LOSSES, RMConfig
from rlhf_lab.reward.ensemble import RewardEnsemble
from rlhf_lab.reward.losses import pairwise_loss
from rlhf_lab.reward.pairs import PairRecord, TrainingPair, prompt_unit, read_pairs
from rlhf_lab.reward.scorer import PairScoring, RewardScorer
from rlhf_lab.reward.stage import SMALL_DATA_PROMPTS, RewardModelStage, replace_seed

warn_moved(__name__, "rlhf_lab.reward")

__all__ = [
    "LOSSES",
    "SMALL_DATA_PROMPTS",
    "PairRecord",
    "PairScoring",
    "RMConfig",
    "RewardEnsemble",
    "RewardModelStage",
    "RewardScorer",
    "TrainingPair",
    "pairwise_loss",
    "prompt_unit",
    "read_pairs",
    "replace_seed",
]
