"""TRL's RLOOTrainer and the lab's RLStage(estimator="rloo"), side by side in one run, random weights.

    python bench/trl_rloo_compare.py --arch gpt2       # GPT-2 124M shape (on a GPU)
    python bench/trl_rloo_compare.py --arch tiny       # the full workload on a tiny model (CPU, minutes)
    python bench/trl_rloo_compare.py --smoke           # tiny model and sizes on CPU (CI, seconds)

Prints ONE JSON line (everything TRL and transformers print goes to stderr): median seconds per
cycle for each side after warm-up, the ratio trl/ours, a breakdown of each side's cycle, the
sizes, device, and the torch/transformers/trl versions.

Workload (the issue's RLOO figure): one cycle = 16 prompts x 4 samples = 64 samples, 32 prompt
tokens, 64 new tokens at fixed length (EOS ignored), then 4 epochs x 4 minibatches of 16 samples
= 16 optimizer steps, a reward model of the same shape (random scalar head), KL to a frozen
reference (beta 0.05) folded into the reward; bf16 autocast on CUDA (fp32 master weights), fp32
on CPU. The models, tokenizer and prompts are built as in `ppo_throughput.py` (imported from it),
each side gets its own copy of the same seeded weights, and nothing is downloaded.

How the cycle maps onto TRL 1.16's RLOOConfig (read from trl/trainer/rloo_trainer.py):

    per_device_train_batch_size = 16   one minibatch (64 samples / 4 minibatches)
    gradient_accumulation_steps = 1    one optimizer step per minibatch
    steps_per_generation        = 4    -> generation_batch_size = 16 x 4 = 64 samples
    num_generations             = 4    -> 64 / 4 = 16 distinct prompts per generation batch
    num_iterations              = 4    the 4 epochs over the buffered generation batch
    max_completion_length = 64, generation_kwargs={"min_new_tokens": 64}   fixed length

RLOOTrainer regenerates every steps_per_generation x num_iterations = 16 optimizer steps
(`_prepare_inputs`), so one cycle = 16 `global_step`s; a TrainerCallback timestamps every 16th
`on_step_end`. The breakdown wraps the trainer's own `_generate` (generation + decoding),
`_calculate_rewards` (scoring) and `_generate_and_score_completions` (the rest of it = old and
reference log-prob forwards + advantages); "update" is the remainder of the cycle (16 optimizer
steps plus the Trainer's per-step overhead). Logging, evaluation and saving are off
(logging_strategy/eval_strategy/save_strategy "no", report_to "none", no progress bar), no vLLM.

What cannot match exactly (also in the JSON "notes"):
- RLOOTrainer builds its reference model with `from_pretrained(config._name_or_path)`, so the
  TRL policy is saved to a temporary folder first (setup, not timed); ours deep-copies the policy.
- TRL computes old/reference log-probs in chunks of per_device_train_batch_size (16 rows); ours in
  one pass over the 64 rows. TRL also computes the entropy in every training forward (fused LM
  head); ours in the no-grad pass and the update.
- TRL's RLOO loss uses a sequence-level ratio and no advantage whitening by default; ours a
  per-token ratio and whitened advantages. Same FLOPs to within rounding; different numbers.
- Both sample with HF `model.generate` (dynamic KV cache, no compile, temperature 1, no top-k/top-p);
  TRL keeps EOS out with min_new_tokens = max_completion_length, ours with stop_on_eos=False (no
  eos_token_id), so both produce exactly the new-token count (the JSON's `completion_tokens_seen`
  checks TRL's).
- Reward text: ours scores "prompt + response + EOS", TRL "prompt + completion" (one token fewer).
- TRL's cycle also contains the Trainer's per-step bookkeeping (callbacks, metric `.item()`s,
  lr scheduler); that is part of what its users pay, so it is counted.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # random weights only: never touch the hub
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ppo_throughput import (  # noqa: E402
    ARCHS,
    TARGET_S,
    TRL_REFERENCE_S,
    build_models,
    device_name,
    random_prompts,
    reward_word_tokenizer,
    word_tokenizer,
)

from rlhf_lab.chat import format_prompt  # noqa: E402
from rlhf_lab.device import choose_device, configure_threads  # noqa: E402
from rlhf_lab.rl import ModelReward, RLStage  # noqa: E402

LEARNING_RATE = 1e-6
BETA = 0.05
NOTES = [
    "TRL's reference model is loaded from a saved copy of its policy (RLOOTrainer loads it by path); "
    "ours deep-copies the policy. Setup only, not timed.",
    "TRL runs the no-grad old/reference log-prob forwards in chunks of per_device_train_batch_size rows; "
    "ours in one pass over all samples.",
    "TRL computes entropy in every training forward (fused LM head); loss: TRL sequence-level ratio, no "
    "advantage whitening (its defaults), ours per-token ratio, whitened advantages. Same work, different numbers.",
    "Both sample with HF model.generate (dynamic KV cache, no compile, temperature 1, no top-k/top-p); TRL keeps "
    "EOS out with min_new_tokens = max_completion_length, ours with stop_on_eos=False.",
    "Reward text: ours 'prompt + response + EOS', TRL 'prompt + completion' (one token shorter).",
    "TRL's 'update' is the rest of its cycle: its optimizer steps plus the Trainer's per-step overhead "
    "(callbacks, metric .item() calls, scheduler).",
]


def workload(smoke: bool) -> dict:
    if smoke:
        return dict(prompts=2, k=2, prompt_words=6, new_tokens=8, epochs=2, minibatches=2)
    return dict(
        prompts=16, k=4, prompt_words=30, new_tokens=64, epochs=4, minibatches=4
    )  # 2 + 30 = 32 tokens


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_gb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _summary(times: list[float], phases: list[dict], work: dict, device: torch.device) -> dict:
    seconds = statistics.median(times)
    return {
        "sec_per_cycle": round(seconds, 4),
        "cycle_times_s": [round(t, 4) for t in times],
        "generated_tokens_per_s": round(work["prompts"] * work["k"] * work["new_tokens"] / seconds, 1),
        "breakdown_s": {k: round(statistics.median(p[k] for p in phases), 4) for k in phases[0]},
        "peak_gpu_mem_gb": _peak_gb(device),
        "torch_threads": torch.get_num_threads(),  # what the side ran with (the Trainer could change it)
    }


def run_ours(arch, work, prompts, device, warmup, cycles) -> dict:
    torch.manual_seed(0)
    tokenizer = word_tokenizer(arch["vocab"])
    policy, reward_model = build_models(arch, tokenizer, device)
    reward_tokenizer = reward_word_tokenizer(arch["vocab"])
    stage = RLStage(
        policy,
        tokenizer,
        prompts,
        ModelReward(reward_model, reward_tokenizer, batch_size=64),
        estimator="rloo",
        stop_on_eos=False,
        learning_rate=LEARNING_RATE,
        beta=BETA,
        batch_size=work["prompts"],
        samples_per_prompt=work["k"],
        max_new_tokens=work["new_tokens"],
        num_epochs=work["epochs"],
        num_minibatches=work["minibatches"],
    )
    times, phases = [], []
    for i in range(warmup + cycles):
        _sync(device)
        started = time.perf_counter()
        stage.step(progress=False)
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - started)
            phases.append(dict(stage.last_timings))
    result = _summary(times, phases, work, device)
    result["optimizer_steps_per_cycle"] = work["epochs"] * work["minibatches"]
    del stage, policy, reward_model
    return result


def trl_config(work: dict, device: torch.device, output_dir: str, total_steps: int):
    """The RLOOConfig whose generation batch is one cycle of the workload (see the module docstring)."""
    from trl import RLOOConfig

    samples = work["prompts"] * work["k"]
    return RLOOConfig(
        output_dir=output_dir,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        max_steps=total_steps,
        per_device_train_batch_size=samples // work["minibatches"],
        gradient_accumulation_steps=1,
        steps_per_generation=work["minibatches"],
        num_generations=work["k"],
        num_iterations=work["epochs"],
        max_completion_length=work["new_tokens"],
        generation_kwargs={"min_new_tokens": work["new_tokens"]},
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        beta=BETA,
        learning_rate=LEARNING_RATE,
        lr_scheduler_type="constant",
        max_grad_norm=1.0,
        bf16=device.type == "cuda",
        use_cpu=device.type == "cpu",
        gradient_checkpointing=False,  # RLOOConfig turns it on by default; ours does not checkpoint
        disable_dropout=True,  # ours switches dropout off during its steps
        dataloader_num_workers=0,
        seed=0,
    )


def run_trl(arch, work, prompts, device, warmup, cycles) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import RLOOTrainer

    steps_per_cycle = work["epochs"] * work["minibatches"]

    class CycleClock(TrainerCallback):
        """Timestamps the start of the first step and the end of every cycle's last optimizer step."""

        def __init__(self):
            self.marks: list[float] = []
            self.steps: list[int] = []

        def on_step_begin(self, args, state, control, **kwargs):
            if not self.marks:
                _sync(device)
                self.marks.append(time.perf_counter())
                self.steps.append(state.global_step)

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % steps_per_cycle == 0:
                _sync(device)
                self.marks.append(time.perf_counter())
                self.steps.append(state.global_step)

    torch.manual_seed(0)
    tokenizer = word_tokenizer(arch["vocab"])
    policy, reward_model = build_models(arch, tokenizer, device)
    reward_tokenizer = reward_word_tokenizer(arch["vocab"])
    # The same text our stage feeds its policy; the trailing space keeps "Assistant:" and the first
    # completion word apart when TRL joins prompt + completion for the reward model.
    dataset = Dataset.from_dict({"prompt": [format_prompt(tokenizer, p) + " " for p in prompts]})

    clock = CycleClock()
    phase_log: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="trl_rloo_") as tmp:
        ref_dir = str(Path(tmp) / "policy")
        policy.save_pretrained(ref_dir)  # RLOOTrainer builds its reference model from this path
        policy.config._name_or_path = ref_dir
        trainer = RLOOTrainer(
            model=policy,
            reward_funcs=reward_model,
            args=trl_config(work, device, str(Path(tmp) / "out"), (warmup + cycles) * steps_per_cycle),
            train_dataset=dataset,
            processing_class=tokenizer,
            reward_processing_classes=reward_tokenizer,
            callbacks=[clock],
        )

        def timed(name, fn):
            def wrapper(*a, **kw):
                _sync(device)
                started = time.perf_counter()
                out = fn(*a, **kw)
                _sync(device)
                cycle = trainer.state.global_step // steps_per_cycle
                phases = phase_log.setdefault(cycle, {})
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - started
                return out

            return wrapper

        lengths = {"prompt": set(), "completion": set()}
        generate = timed("generation", trainer._generate)

        def generate_and_count(prompts):
            prompt_ids, completion_ids, completions = generate(prompts)
            lengths["prompt"].update(len(ids) for ids in prompt_ids)
            lengths["completion"].update(len(ids) for ids in completion_ids)
            return prompt_ids, completion_ids, completions

        trainer._generate = generate_and_count
        trainer._calculate_rewards = timed("scoring", trainer._calculate_rewards)
        trainer._generate_and_score_completions = timed("rollout", trainer._generate_and_score_completions)
        trainer.train()
        global_step = trainer.state.global_step

    assert clock.steps == [0] + [steps_per_cycle * (c + 1) for c in range(warmup + cycles)], clock.steps
    assert global_step == (warmup + cycles) * steps_per_cycle, global_step
    times, phases = [], []
    for c in range(warmup, warmup + cycles):
        total = clock.marks[c + 1] - clock.marks[c]
        p = phase_log[c]
        times.append(total)
        phases.append(
            {
                "generation": p["generation"],
                "scoring": p["scoring"],
                "forwards": p["rollout"] - p["generation"] - p["scoring"],
                "update": total - p["rollout"],
            }
        )
    result = _summary(times, phases, work, device)
    result["optimizer_steps_per_cycle"] = steps_per_cycle
    # What TRL actually generated, every cycle: the fixed-length workload needs one value each.
    result["prompt_tokens_seen"] = sorted(lengths["prompt"])
    result["completion_tokens_seen"] = sorted(lengths["completion"])
    result["config"] = {
        "per_device_train_batch_size": work["prompts"] * work["k"] // work["minibatches"],
        "gradient_accumulation_steps": 1,
        "steps_per_generation": work["minibatches"],
        "generation_batch_size": work["prompts"] * work["k"],
        "num_generations": work["k"],
        "num_iterations": work["epochs"],
        "max_completion_length": work["new_tokens"],
        "min_new_tokens": work["new_tokens"],
        "beta": BETA,
        "bf16": device.type == "cuda",
        "gradient_checkpointing": False,
        "use_vllm": False,
    }
    del policy, reward_model
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="gpt2")
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="cuda = the first GPU (TRL's)"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny model and sizes on CPU (CI)")
    parser.add_argument(
        "--cycles", type=int, default=None, help="measured cycles per side (default 5; smoke 2)"
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help="unmeasured cycles first (default 2; smoke 1)"
    )
    args = parser.parse_args(argv)

    if args.smoke:
        args.arch, args.device = "tiny", "cpu"
    cycles = args.cycles or (2 if args.smoke else 5)
    warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 2)
    if cycles < 1 or warmup < 0:
        parser.error("--cycles must be >= 1 and --warmup >= 0")

    real_stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its final metrics; keep stdout for JSON
        result = measure(args, cycles, warmup)
    print(json.dumps(result), file=real_stdout, flush=True)
    return result


def measure(args, cycles: int, warmup: int) -> dict:
    import datasets
    import transformers
    import trl

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()

    device = choose_device(None if args.device == "auto" else args.device)
    threads = configure_threads(device)
    arch, work = ARCHS[args.arch], workload(args.smoke)
    random.seed(0)
    prompts = random_prompts(arch["vocab"], work["prompt_words"])

    _free(device)
    ours = run_ours(arch, work, prompts, device, warmup, cycles)
    _free(device)
    theirs = run_trl(arch, work, prompts, device, warmup, cycles)
    _free(device)

    key = f"rloo/{args.arch}"
    return {
        "bench": "trl_rloo_compare",
        "arch": args.arch,
        "device": str(device),
        "device_name": device_name(device),
        "precision": "bf16 autocast" if device.type == "cuda" else "fp32",
        "threads": threads,
        "smoke": args.smoke,
        "samples_per_cycle": work["prompts"] * work["k"],
        "prompts_x_samples": [work["prompts"], work["k"]],
        "prompt_tokens": work["prompt_words"] + 2,
        "new_tokens": work["new_tokens"],
        "epochs_x_minibatches": [work["epochs"], work["minibatches"]],
        "warmup_cycles": warmup,
        "measured_cycles": cycles,
        "ours": ours,
        "trl": theirs,
        "ratio_trl_over_ours": round(theirs["sec_per_cycle"] / ours["sec_per_cycle"], 3),
        "issue_trl_h100_s": TRL_REFERENCE_S.get(key),
        "target_h100_s": TARGET_S.get(key),
        "torch": torch.__version__,
        "transformers_version": transformers.__version__,
        "trl_version": trl.__version__,
        "notes": NOTES,
    }


if __name__ == "__main__":
    main()
