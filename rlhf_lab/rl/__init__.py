"""The lab's RL engine: PPO, RLOO, GRPO and REINFORCE behind one stepwise stage.

    >>> from rlhf_lab.rl import RLStage, RLConfig
    >>> stage = RLStage(policy, tokenizer, prompts, reward=my_reward, estimator="rloo", beta=0.05)
    >>> stage.step(10)

Modules, one job each: config (RLConfig), rollout (sampling, forward passes), logprobs,
advantages (the estimators), kl (estimators and controllers), losses (clipped surrogate, value
loss), rewards (reward adapters), value (value head / value model), samples (the sample buffer),
step_metrics (metric row, timings), guards (input checks, KL guard, OOM), checkpoint (model
files), distributed (data parallel), stage (RLStage: the step, top to bottom).
"""

from rlhf_lab.rl.config import RLConfig
from rlhf_lab.rl.rewards import ModelReward, RewardError, RoutedReward, WeightedReward
from rlhf_lab.rl.stage import PPOStage, RLStage

__all__ = ["RLStage", "RLConfig", "PPOStage", "ModelReward", "WeightedReward", "RoutedReward", "RewardError"]
