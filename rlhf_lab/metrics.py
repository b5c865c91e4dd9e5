"""The one vocabulary of metric names shared by every stage and every chart.

Names follow the ecosystem's (TRL, CleanRL): `<group>/<quantity>`. Every stage adds the common
columns (`stage`, `step`, `lab_step`, `wall_time`, `elapsed_s`, `time/step_s`) to each row. A
test checks that every key a stage emits is listed here, so charts never chase a renamed key.
KL is always nats per *sequence* (summed over response tokens), whatever the estimator.
"""

from __future__ import annotations

COMMON = {
    "stage": "Which stage produced the row (sft, rm, ppo, rloo, grpo, reinforce, dpo).",
    "step": "The stage's own optimisation step, counted from 1.",
    "lab_step": "A step counter shared by all stages of one Lab, so curves read as one story.",
    "wall_time": "Unix time when the row was produced.",
    "elapsed_s": "Seconds spent inside this stage's steps so far.",
    "time/step_s": "Seconds this step took.",
}

METRICS: dict[str, str] = {
    **COMMON,
    # losses
    "loss/sft": "SFT cross-entropy on response tokens (mean per token).",
    "loss/rm": "Reward-model loss (Bradley-Terry / ranking / soft-label cross-entropy).",
    "loss/policy": "Clipped surrogate (PPO) or policy-gradient loss.",
    "loss/value": "Value-function loss (PPO).",
    "loss/dpo": "DPO or IPO loss.",
    "loss/total": "Everything that was back-propagated.",
    # optimisation
    "train/learning_rate": "Learning rate used for this step.",
    "train/grad_norm": "Gradient norm before clipping.",
    "train/tokens": "Tokens (response tokens for SFT) in this step's batch.",
    "train/epoch": "Fraction of passes over the training data so far.",
    # reward model
    "rm/accuracy": "Training-batch pairwise accuracy: r(chosen) > r(rejected).",
    "rm/margin": "Mean r(chosen) - r(rejected) on the batch.",
    "rm/val_accuracy": "Held-out pairwise accuracy.",
    "rm/val_auc": "Held-out ROC AUC of r(A) - r(B) against the label.",
    "rm/val_ece": "Held-out expected calibration error of sigmoid(r(A) - r(B)).",
    "rm/val_loss": "Held-out loss.",
    "rm/gold_accuracy": "Held-out accuracy against a gold rater, when one exists.",
    "rm/agreement_ceiling": "Inter-annotator agreement on the same data: the accuracy ceiling.",
    "rm/n_pairs": "Number of training pairs in the store when the step ran.",
    # RL objective (per sequence)
    "objective/scores": "Mean score of the sampled responses as the policy optimises it: the reward model's "
    "score after normalisation (mean 0, std 1 on the starting policy's samples) or the reward function's own.",
    "objective/raw_scores": "Mean score of the sampled responses as the reward model or function returned it, "
    "before normalisation.",
    "objective/kl": "Mean KL(pi || pi_ref) per sequence, k1 estimator (sum of log-ratio).",
    "objective/kl_k3": "Mean KL per sequence, k3 estimator (always >= 0, lower variance).",
    "objective/entropy": "Mean per-sequence entropy of the sampling policy.",
    "objective/non_score_reward": "Mean -beta * KL part of the shaped reward.",
    "objective/rlhf_reward": "scores + non_score_reward: what the policy maximises.",
    "objective/beta": "KL coefficient used for this step.",
    "objective/kl_warning": "1 when the step's KL passed the caution level (RLConfig.kl_warning, ~8 nats), else 0.",
    "objective/gold_scores": "Mean gold-judge score of the samples, when a gold judge is set.",
    "objective/scores/<name>": "Per-objective score for multi-objective rewards (one column each); an "
    "objective that is a reward model after its normalisation (mean 0, std 1 on the starting policy's samples).",
    "objective/raw_scores/<name>": "Per-objective score of an objective that is a reward model, before "
    "normalisation.",
    # policy update
    "policy/entropy": "Mean per-token entropy of the policy on the sampled responses.",
    "policy/approxkl": "Mean 0.5 * (log ratio)^2 between the new and old policy (update size).",
    "policy/clipfrac": "Fraction of tokens whose probability ratio was clipped.",
    "policy/ratio": "Mean probability ratio new/old.",
    "val/clipfrac": "Fraction of value predictions clipped.",
    "val/mean": "Mean value prediction.",
    "val/explained_variance": "1 - Var(returns - values) / Var(returns).",
    # samples
    "response/length": "Mean response length in tokens.",
    "response/eos_rate": "Fraction of responses that ended with EOS.",
    # DPO
    "rewards/chosen": "DPO implicit reward of chosen responses (beta * log ratio).",
    "rewards/rejected": "DPO implicit reward of rejected responses.",
    "rewards/accuracy": "Fraction of pairs where the implicit reward prefers the chosen response.",
    "rewards/margin": "Mean implicit reward margin chosen - rejected.",
}


_PER_OBJECTIVE = ("objective/scores/", "objective/raw_scores/")


def is_known(name: str) -> bool:
    """True if `name` is in the vocabulary (per-objective score columns included)."""
    return name in METRICS or name.startswith(_PER_OBJECTIVE)


def describe(name: str) -> str:
    if name not in METRICS:
        for prefix in _PER_OBJECTIVE:
            if name.startswith(prefix):
                return METRICS[prefix + "<name>"]
    return METRICS[name]
