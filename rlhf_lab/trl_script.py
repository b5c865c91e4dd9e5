"""Run a recipe exported by `rlhf-lab export-trl` with TRL 1.16 (this file is copied as train_trl.py).

    accelerate launch train_trl.py                  # every GPU of the machine; DeepSpeed via `accelerate config`
    python train_trl.py --cpu --max-steps 2         # a quick check on a laptop
    accelerate launch train_trl.py --resume         # after a crash: finished stages are kept, the stopped
                                                    # one goes on from its last checkpoint (checkpoint_every)

Reads recipe.json next to this file: the starting policy, then stages (sft, dpo, reward, rl) with the
TRL config arguments rlhf-lab mapped from the lab's settings. Each stage trains from the previous
stage's output folder and writes outputs/<stage>/ (LoRA adapters are merged before saving, so every
folder is a plain transformers model). Several reward models each get outputs/reward_<name>/; the RL
stage puts them on one scale and weighs them by its `reward_weights`, or routes each prompt to one of
them by a column of the prompts (`route`). Needs trl>=1.16,<1.17, accelerate, peft and datasets;
`reward: gold` also needs rlhf-lab (the task's gold judge). Stand-alone: it does not import rlhf_lab
otherwise.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _path(value: str | None) -> str | None:
    """Folders in the recipe are relative to this file; hub ids stay as they are."""
    if value is None:
        return None
    local = HERE / value
    return str(local) if local.exists() else value


def _text(value) -> str:
    return value if isinstance(value, str) else value[-1]["content"]


def gold_reward(task: str):
    from rlhf_lab.raters import get_judge  # the bundled task's judge (pip install rlhf-lab)

    judge = get_judge(task)

    def gold(prompts, completions, **_):
        return [float(judge.score(_text(p), _text(c))) for p, c in zip(prompts, completions)]

    return gold


FLAT_STD = 0.05  # a reward model whose first scores vary less is centred, not scaled up (rlhf_lab's rule)


def reward_model_function(folder: str, name: str, route: str | None = None):
    """The reward model in `folder` as a TRL reward function, on one scale with the others.

    Each of several reward models is rescaled to mean 0 and std 1 on its scores of the first batch (or of
    the starting policy's fresh answers: fit_scales_on_fresh_answers), and that fit is kept, as rlhf-lab's
    RL stage does (after lm-human-preferences, Ziegler et al. 2019): the weights then mean what they say,
    whatever scale each Bradley-Terry model happened to learn. With `route`, the model answers only for
    the prompts whose `route` column says `name` and returns None for the others, which TRL skips (its
    "multi-task" rewards): each prompt is paid by its own model, Llama 2's rule (Touvron et al. 2023,
    section 3.2.3). The text is built as TRL 1.16 builds it for a reward model (grpo_trainer.py,
    _calculate_rewards).
    """
    import torch
    from accelerate import PartialState
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl.data_utils import apply_chat_template, is_conversational

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1).eval()
    fit: dict[str, float] = {}

    def reward(prompts, completions, **columns):
        if is_conversational({"prompt": prompts[0]}):
            texts = [
                apply_chat_template({"messages": p + c}, tokenizer)["text"]
                for p, c in zip(prompts, completions)
            ]
        else:
            texts = [p + c for p, c in zip(prompts, completions)]
        model.to(PartialState().device)
        batch = tokenizer(
            text=texts, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False
        )
        with torch.inference_mode():
            scores = model(**batch.to(model.device)).logits[:, 0].float().cpu()
        if not fit:  # every sample of the first batch, routed here or not, as the lab fits
            std = float(scores.std()) if len(scores) > 1 else 0.0
            fit.update(mean=float(scores.mean()), gain=1.0 / max(std, FLAT_STD))
        scaled = ((scores - fit["mean"]) * fit["gain"]).tolist()
        if route is None:
            return scaled
        return [score if mine == name else None for score, mine in zip(scaled, columns[route])]

    reward.__name__ = f"reward_{name}"  # TRL logs rewards/reward_<name>/mean
    reward.fit = fit  # read by fit_scales_on_fresh_answers, which reports it
    return reward


def fit_scales_on_fresh_answers(policy: str, data, rewards: list, n: int, args: dict) -> None:
    """Fit each reward function's scale on `n` answers of the starting policy before the first step (the
    lab's `reward_norm_samples`), instead of on the first batch: one answer per prompt in the prompts'
    order (wrapping), sampled as the trainer samples (temperature, top-k, top-p, length), then every
    reward function scores them once, which fixes its scale. Prints each scale as a JSON line."""
    import torch
    from accelerate import PartialState
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(policy, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(policy).to(PartialState().device).eval()
    rows = [data[i % len(data)] for i in range(n)]
    prompts = [row["prompt"] for row in rows]
    sampling = {"temperature": args.get("temperature", 1.0), "top_p": args.get("top_p", 1.0)}
    if args.get("top_k"):
        sampling["top_k"] = args["top_k"]
    generator_seed = args.get("seed", 0)
    completions = []
    for start in range(0, n, 16):
        batch = tokenizer.apply_chat_template(
            prompts[start : start + 16],
            add_generation_prompt=True,
            padding=True,
            return_tensors="pt",
            return_dict=True,
        ).to(model.device)
        torch.manual_seed(generator_seed + start)  # the same answers on every process: one shared scale
        with torch.inference_mode():
            out = model.generate(
                **batch,
                do_sample=True,
                max_new_tokens=args.get("max_completion_length", 256),
                pad_token_id=tokenizer.pad_token_id,
                **sampling,
            )
        texts = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        completions += [[{"role": "assistant", "content": text}] for text in texts]
    columns = {key: [row[key] for row in rows] for key in rows[0] if key != "prompt"}
    for reward in rewards:
        reward(prompts, completions, **columns)  # the first call fits and keeps the scale
        print(json.dumps({"reward_scale": reward.__name__, **reward.fit, "fitted_on": n}), flush=True)


DONE = "done.json"  # written into a stage's folder once its model is saved there


def run_stage(
    stage: dict, policy: str, reward_models: dict, out: Path, overrides: dict, resume: bool = False
) -> str:
    import trl
    from datasets import load_dataset
    from peft import LoraConfig

    kind = stage["kind"]
    name = f"{kind}_{stage['name']}" if stage.get("name") else kind  # one folder per named reward model
    args = {**stage["args"], **overrides, "output_dir": str(out / name)}
    folder = Path(args["output_dir"])
    if resume and (folder / DONE).is_file():
        return str(folder)  # finished before the run stopped
    if "max_steps" in overrides:
        args.pop("num_train_epochs", None)
    data = load_dataset("json", data_files=str(HERE / stage["dataset"]), split="train")
    peft_config = None
    if stage.get("lora"):
        task_type = "SEQ_CLS" if kind == "reward" else "CAUSAL_LM"
        peft_config = LoraConfig(task_type=task_type, **stage["lora"])
    common = {"train_dataset": data, "peft_config": peft_config}
    if kind == "sft":
        trainer = trl.SFTTrainer(model=policy, args=trl.SFTConfig(**args), **common)
    elif kind == "dpo":
        trainer = trl.DPOTrainer(model=policy, args=trl.DPOConfig(**args), **common)
    elif kind == "reward":
        trainer = trl.RewardTrainer(model=_path(stage["model"]), args=trl.RewardConfig(**args), **common)
    else:
        config_cls, trainer_cls = {
            "grpo": (trl.GRPOConfig, trl.GRPOTrainer),
            "rloo": (trl.RLOOConfig, trl.RLOOTrainer),
        }[stage["estimator"]]
        if stage.get("reward_models"):  # several: weighted by args["reward_weights"], or routed
            route = stage.get("route")
            reward = [reward_model_function(reward_models[n], n, route) for n in stage["reward_models"]]
            if stage.get("reward_norm_samples"):
                fit_scales_on_fresh_answers(policy, data, reward, stage["reward_norm_samples"], args)
        else:
            reward = reward_models[None] if stage["reward"] == "rm" else gold_reward(stage["task"])
        trainer = trainer_cls(model=policy, reward_funcs=reward, args=config_cls(**args), **common)
    # Trainer picks the newest checkpoint-<step> folder in output_dir (save_steps: the config's checkpoint_every)
    checkpoints = resume and any(folder.glob("checkpoint-*"))
    trainer.train(resume_from_checkpoint=True if checkpoints else None)
    model = trainer.model
    if hasattr(model, "merge_and_unload"):  # peft: write one plain model
        model = trainer.accelerator.unwrap_model(model).merge_and_unload()
    if trainer.accelerator.is_main_process:
        model.save_pretrained(folder, safe_serialization=True)
        trainer.processing_class.save_pretrained(folder)
        (folder / DONE).write_text(json.dumps({"stage": name, "steps": trainer.state.global_step}))
    trainer.accelerator.wait_for_everyone()
    return str(folder)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(HERE / "recipe.json"))
    parser.add_argument("--output-dir", default=None, help="default: outputs/ next to this file")
    parser.add_argument("--max-steps", type=int, default=None, help="cap every stage (a quick check)")
    parser.add_argument("--cpu", action="store_true", help="use_cpu=True, bf16 off")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep finished stages; the stopped one goes on from its last checkpoint",
    )
    args = parser.parse_args(argv)
    recipe = json.loads(Path(args.recipe).read_text(encoding="utf-8"))
    out = Path(args.output_dir) if args.output_dir else HERE / recipe["output_dir"]
    overrides: dict = {}
    if args.max_steps is not None:
        overrides["max_steps"] = args.max_steps
    if args.cpu:
        overrides.update(use_cpu=True, bf16=False)
    policy, reward_models = _path(recipe["policy"]), {}
    for stage in recipe["stages"]:
        folder = run_stage(stage, policy, reward_models, out, overrides, resume=args.resume)
        if stage["kind"] == "reward":
            reward_models[stage.get("name")] = folder
        else:
            policy = folder
        done = {"stage": stage["kind"], "trainer": stage["trainer"], "output": folder}
        print(json.dumps({**done, **({"name": stage["name"]} if stage.get("name") else {})}), flush=True)


if __name__ == "__main__":
    main()
