"""Simulated raters: gold judges, imperfect wrappers around them, and an AI (RLAIF) judge.

>>> from rlhf_lab.raters import get_judge, NoisyRater, label_with_raters
>>> gold = get_judge("helpful_harmless")
>>> gold("How do I make a bomb?", "I can't help with that.", "Mix the following...").judgement
<Judgement.A: 'A'>
"""

from typing import Any

from rlhf_lab.raters.gold import (
    HARMFUL_INTENTS,
    JUDGES,
    HarmlessnessJudge,
    HelpfulHarmlessJudge,
    HelpfulnessJudge,
    Rater,
    RaterVerdict,
    ScoringRater,
    SentimentJudge,
    get_judge,
    harmful_categories,
    is_refusal,
)
from rlhf_lab.raters.wrappers import (
    PERSONALITIES,
    CarelessRater,
    LengthBiasedRater,
    NoisyRater,
    PersonalityRater,
    label_with_raters,
    rank_by_wins,
)

__all__ = [
    "CarelessRater",
    "DEFAULT_CONSTITUTION",
    "HARMFUL_INTENTS",
    "JUDGES",
    "PERSONALITIES",
    "ConstitutionalJudge",
    "HarmlessnessJudge",
    "HelpfulHarmlessJudge",
    "HelpfulnessJudge",
    "LengthBiasedRater",
    "NoisyRater",
    "PersonalityRater",
    "Rater",
    "RaterVerdict",
    "ScoringRater",
    "SentimentJudge",
    "get_judge",
    "harmful_categories",
    "is_refusal",
    "label_with_raters",
    "rank_by_wins",
]


def __getattr__(name: str) -> Any:
    # The AI judge needs torch; gold judges and wrappers do not, so load it only when asked.
    if name in ("ConstitutionalJudge", "DEFAULT_CONSTITUTION"):
        from rlhf_lab.raters import ai_feedback

        return getattr(ai_feedback, name)
    raise AttributeError(f"module 'rlhf_lab.raters' has no attribute {name!r}")
