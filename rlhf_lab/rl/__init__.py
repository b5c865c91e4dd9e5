"""The lab's RL engine: PPO, RLOO, GRPO and REINFORCE behind one stepwise stage.

    >>> from rlhf_lab.rl import RLStage, RLConfig
    >>> stage = RLStage(policy, tokenizer, prompts, reward=my_reward, estimator="rloo", beta=0.05)
    >>> stage.step(10)

Modules: config (RLConfig), rollout (sampling, forward passes), logprobs, advantages, kl,
rewards (reward adapters), value (value head / value model), stage (RLStage).
"""

from rlhf_lab.rl.config import RLConfig
from rlhf_lab.rl.rewards import ModelReward, RewardError, WeightedReward
from rlhf_lab.rl.stage import PPOStage, RLStage

__all__ = ["RLStage", "RLConfig", "PPOStage", "ModelReward", "WeightedReward", "RewardError"]
