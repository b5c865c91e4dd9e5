"""TRL 1.16's RewardTrainer and GRPOTrainer take the folders `export()` writes (tiny preset, CPU)."""

import pytest
import torch

pytestmark = pytest.mark.slow  # a few TRL steps: ~10 s on 2 cores

PAIRS = [
    {"prompt": f"Review film {i}.", "chosen": "great fun, loved it", "rejected": "dull and slow"}
    for i in range(16)
]
CPU = {
    "report_to": "none",
    "save_strategy": "no",
    "logging_strategy": "no",
    "disable_tqdm": True,
    "use_cpu": True,
    "bf16": False,
    "activation_checkpointing": False,
    "dataloader_num_workers": 0,
    "max_steps": 2,
    "per_device_train_batch_size": 4,
}


@pytest.fixture()
def exported(tmp_path):
    from rlhf_lab import Lab

    lab = Lab.from_preset("tiny", store=tmp_path / "labels.sqlite")
    sft = lab.sft([{"prompt": p["prompt"], "response": p["chosen"]} for p in PAIRS], batch_size=4)
    sft.step(2, progress=False)
    rm = lab.reward_model(PAIRS, batch_size=8)
    rm.fit(epochs=1, progress=False)
    return sft.export(tmp_path / "policy"), rm.export(tmp_path / "rm")


def test_reward_trainer_trains_the_exported_reward_model(exported, tmp_path):
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    _, rm_folder = exported
    rows = [
        {
            "prompt": [{"role": "user", "content": p["prompt"]}],
            "chosen": [{"role": "assistant", "content": p["chosen"]}],
            "rejected": [{"role": "assistant", "content": p["rejected"]}],
        }
        for p in PAIRS
    ]
    args = RewardConfig(
        output_dir=str(tmp_path / "out"), learning_rate=1e-3, center_rewards_coefficient=None, **CPU
    )
    trainer = RewardTrainer(model=str(rm_folder), args=args, train_dataset=Dataset.from_list(rows))
    result = trainer.train()
    assert result.global_step == 2 and torch.isfinite(torch.tensor(result.training_loss))


def test_grpo_trainer_uses_the_exported_policy_and_reward_model(exported, tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    policy_folder, rm_folder = exported
    prompts = Dataset.from_list([{"prompt": [{"role": "user", "content": p["prompt"]}]} for p in PAIRS])
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"),
        num_generations=2,
        max_completion_length=6,
        beta=0.0,
        disable_dropout=True,
        learning_rate=1e-4,
        **CPU,
    )
    trainer = GRPOTrainer(
        model=str(policy_folder), reward_funcs=str(rm_folder), args=args, train_dataset=prompts
    )
    result = trainer.train()
    assert result.global_step == 2
    rewards = [row["reward"] for row in trainer.state.log_history if "reward" in row]
    assert all(r == r for r in rewards)  # the exported reward model scored the completions
