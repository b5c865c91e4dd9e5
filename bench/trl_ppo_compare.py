"""Seconds per PPO step, side by side in one run: our `RLStage(estimator="ppo")` vs TRL 1.12's PPOTrainer.

    python bench/trl_ppo_compare.py --arch gpt2                 # GPT-2 124M shape (on a GPU)
    python bench/trl_ppo_compare.py --arch smollm2              # SmolLM2-135M shape
    python bench/trl_ppo_compare.py --arch tiny --device cpu    # the full workload on a tiny model
    python bench/trl_ppo_compare.py --smoke                     # tiny sizes on CPU, well under a minute (CI)

Prints ONE JSON line: median seconds per PPO step (after warm-up) of TRL 1.12's
`trl.experimental.ppo.PPOTrainer` and of our PPO with a separate value model (`--value separate`,
the like-for-like row: TRL's PPO always trains a separate value model) and with our default value
head (`--value head`), the ratios TRL / ours, both versions, device, arch, sizes, and `notes`:
every way in which the two sides' work differs.

TRL 1.12.0 is the last TRL release with PPO (deleted in 1.13); the main virtualenv keeps its newer
TRL. On first use this script runs `python -m pip install --no-deps --target bench/.cache/trl-1.12.0
trl==1.12.0` (pure Python; accelerate, datasets and transformers come from the virtualenv) and runs
the TRL side in a subprocess with that folder first on PYTHONPATH. `--trl-path DIR` uses an
existing install (a folder holding `trl/` of version 1.12.0). Our side runs in its own subprocess
too (the same `bench/ppo_throughput.py` code, called twice: value separate, then value head), so
both sides pay the same process start-up, and neither's memory or caches leak into the other.
Subprocesses run one after the other: ours first, then TRL.

Models and workload are those of `bench/ppo_throughput.py` (imported, not copied): random weights
built from configs (GPT-2 124M, SmolLM2-135M or the tiny GPT-2), the word-level tokenizer with
exactly the model's vocabulary, a reward model of the same shape with a scalar head (bf16 on
CUDA), the same 256 random prompts laid out by `rlhf_lab.chat.format_prompt` (2 + 30 = 32
tokens; smoke: 2 + 6 = 8). Workload: 64 prompts x 1 sample, 64 new tokens at fixed length (EOS
ignored), 4 epochs x 4 minibatches of 16, learning rate 1e-6, temperature 1, bf16 on CUDA, fp32
on CPU. Smoke: 4 prompts, 8 new tokens, 2 x 2, tiny GPT-2 (2 layers, width 64, vocab 1024), CPU.

How the workload maps onto TRL 1.12's PPOConfig (read from trl/experimental/ppo/ppo_trainer.py):
  per_device_train_batch_size = 64, gradient_accumulation_steps = 1 -> local_batch_size = 64
      rollouts per update;
  num_mini_batches = 4 -> local_mini_batch_size = 16; the micro-batch loop then runs once per
      minibatch (a slice [0:64] of 16 indices), and with gradient accumulation 1 the optimizer
      steps after every minibatch: 4 x 4 = 16 optimizer steps per update, as ours. (Setting
      per_device 16 x accumulation 4 would also give 64 rollouts, but accelerate would then step
      the optimizer only every 4th minibatch.)
  num_ppo_epochs = 4; local_rollout_forward_batch_size = 64 (one generate call, one no-grad
      forward per model over all 64 rollouts, like ours); response_length = 64;
  stop_token = None, stop_token_id = None -> TRL sets the policy's generation eos to None, so it
      always samples 64 tokens (the script checks the generated length, `trl_response_tokens`);
  total_episodes = 64 x (warm-up + measured updates), num_sample_generations = 0, no
      eval_dataset, save_strategy "no", report_to "none", PrinterCallback removed, temperature 1,
      learning_rate 1e-6, seed 0, bf16 = (device is CUDA), use_cpu = (device is CPU),
      gradient_checkpointing = False (TRL's config default is True, but PPOTrainer 1.12 never
      calls gradient_checkpointing_enable (read from the source; the JSON's
      `trl_gradient_checkpointing_on` confirms), so either value gives the same run; `--trl-gradient-
      checkpointing` turns it on explicitly on the policy, for the record);
  value_model = a second `...ForSequenceClassification` of the same shape, fp32 (trained);
  reward_model = the reward model of ppo_throughput.build_models; ref_model = None (TRL deep-copies
      the policy, as ours does).

What one TRL "step" is: one iteration of `PPOTrainer.train()`'s `for update in ...` loop, timed
by a TrainerCallback as the wall time between consecutive `on_step_end` calls (the first from
`on_train_begin`), with a CUDA synchronize at each mark. It therefore includes: next prompt batch
from the DataLoader, generation (64 x 64 tokens, with output_scores), log-probs from the
generation scores, reference forward, value-model forward, reward-model forward, GAE and whitening,
4 x 4 forward/backward/AdamW steps, the metrics (about 15 `.item()` syncs and `self.log`), the LR
scheduler step, and the previous update's clean-up (`empty_cache`, `gc.collect()`). Ours is one
`RLStage.step()`. `trl_generation_s` is the median time inside TRL's `batch_generation`.

Output fields: `sec_per_step` {trl, ours_separate_value, ours_value_head}, `step_times_s` (each
side's measured steps), `ratio_trl_over_ours` {separate_value, value_head}, `ours_breakdown_s`
(per value mode: generation, scoring, forwards, update), `trl_generation_s`, `trl_gc_s` (seconds
of garbage collection per TRL update), `optimizer` (class, fused, eps per side), `peak_gpu_mem_gb`,
`versions` (trl, trl_path, transformers, torch, accelerate), `trl_settings` (the PPOConfig used),
`device`, `device_name`, `threads`, `arch`, `rollouts_per_step`, `prompt_tokens`, `new_tokens`,
`epochs_x_minibatches`, `warmup`, `steps`, `trl_reference_h100_s` / `target_h100_s` (from the
issue: TRL 1.12 2.87 s on GPT-2, 8.74 s on SmolLM2; targets 0.6 / 1.5 s), `notes`.

Measured (CPU: 2 cores shared with other jobs, load average 4-5, one torch thread, torch 2.13.0+cpu,
transformers 5.23.0, accelerate 1.15.0, TRL 1.12.0 run unmodified, no shims needed; upper bounds):

  command                                       TRL 1.12   ours separate   ours head   wall
  python bench/trl_ppo_compare.py --smoke         0.76 s       0.05 s         0.04 s     23 s
  python bench/trl_ppo_compare.py --arch tiny     2.88 s       1.96 s         1.38 s     65 s
      --device cpu  (64 x 32+64, 4 x 4)        (ratio 1.47 vs separate, 2.09 vs head)

  Of TRL's 2.88 s, 0.74 s is garbage collection (`trl_gc_s`: its two gc.collect() calls per update,
  ~0.37 s each in a process holding torch + transformers + datasets + trl) and 0.31 s generation;
  ours (separate value): generation 0.27, scoring 0.07, forwards 0.21, update 1.37. Without the
  gc.collect() calls TRL's step would be about as long as ours with a separate value model; the
  value head saves a third of ours. An earlier run of the tiny workload: 2.86 / 2.05 / 1.38 s.
  GPU: not measured (no GPU in the session that wrote this); run `--arch gpt2` and `--arch
  smollm2` on an H100 and compare with the issue's 2.87 / 8.74 s for TRL and 0.6 / 1.5 s targets.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

TRL_VERSION = "1.12.0"
DEFAULT_TRL_PATH = HERE / ".cache" / f"trl-{TRL_VERSION}"

# Every way the two sides' work differs (also printed in the JSON's "notes").
NOTES = [
    "value function: TRL always trains a separate value model (AutoModelForSequenceClassification of the "
    "policy's shape, fp32); ours_separate_value uses a deep copy of the policy backbone + a linear head (same "
    "FLOPs, the LM head skipped via logits_to_keep=1); ours_value_head shares the policy's backbone (one "
    "forward/backward fewer per minibatch, half the trained weights).",
    "old log-probs: TRL takes them from generate()'s output_scores (no extra policy forward, but it keeps the "
    "rollout's full logits, rollouts x new tokens x vocab floats); ours runs one no-grad policy forward after "
    "generation.",
    "precision on CUDA: ours runs generation, the no-grad forwards and the update under bf16 autocast; TRL "
    "autocasts only the accelerate-prepared policy+value wrapper (the update), while generation (unwrapped "
    "policy), the reference forward and the value-model rollout forward run in fp32; the reward model is bf16 "
    "on both sides. accelerate also casts the wrapper's outputs (the update's full-vocabulary logits) to fp32. "
    "All trained weights are fp32 master weights on both sides (TRL's example script would load SmolLM2 in its "
    "checkpoint dtype, bf16). On CPU both sides are fp32.",
    "optimizer: TRL uses transformers' default optim adamw_torch_fused (torch AdamW, eps 1e-8, fused on CPU too) "
    "with a linear LR schedule; ours torch AdamW eps 1e-5, constant LR, fused as the `optimizer` field shows "
    "(always on CUDA; on CPU depending on the rlhf_lab version). Both step 16 times per update (4 epochs x 4 "
    "minibatches of 16).",
    "gradient clipping: ours clips to norm 1 every minibatch (clip_grad_norm_); TRL 1.12's PPO loop never clips.",
    "host syncs: ours calls check_finite(loss) before every backward (one sync per minibatch) and moves metrics "
    "to the host once per step; TRL syncs at each of ~15 metric .item() calls per update, calls "
    "empty_cache() after every minibatch and gc.collect() twice per update.",
    "reward scoring: ours decodes responses to text and the reward model re-tokenizes prompt + response "
    "(ModelReward, right padding); TRL scores the token ids directly (get_reward on the backbone + score head).",
    "attention masks: TRL derives masks from `token != pad_token_id`, so a sampled pad id (id 0 of the word "
    "vocabulary) is treated as padding and ends the response for the losses; ours tracks the response mask "
    "from generation. Same tensor shapes and FLOPs either way.",
    "entropy: TRL computes the full-vocabulary entropy of every update minibatch under no_grad (for stats); "
    "ours computes it from the same logits (entropy not in the loss, ent_coef 0).",
    "KL: both k1 in the reward with beta/kl_coef 0.05; ours also computes k3 for metrics. Ours adds the "
    "missing-EOS penalty only when stopping on EOS (off here); TRL's missing_eos_penalty is None.",
    "generation: both sample exactly new_tokens tokens with temperature 1 and no top-k/top-p, through "
    "transformers' generate(); TRL asks for output_scores (logits per step) and ours does not.",
    "data: both take batch_size of the same 256 prompts per step (TRL via a shuffled DataLoader + "
    "DataCollatorWithPadding, ours via its seeded prompt order); all prompts have the same length, so no "
    "padding on either side.",
    "step boundary: TRL's step also contains the previous update's clean-up (empty_cache, gc.collect) and "
    "self.log(metrics); ours is one RLStage.step() including its metrics.",
]


# --------------------------------------------------------------------------- TRL 1.12 install
def ensure_trl(path: Path, install: bool) -> Path:
    """Return a folder whose `trl/` is TRL 1.12.0, installing it there with pip if `install`."""
    path = path.resolve()
    if _trl_version_at(path) == TRL_VERSION:
        return path
    if not install:
        raise SystemExit(f"--trl-path {path}: no trl {TRL_VERSION} there (found {_trl_version_at(path)}).")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="trl-install-", dir=path.parent))
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-compile",
        "--disable-pip-version-check",
        "--target",
        str(staging),
        f"trl=={TRL_VERSION}",
    ]
    print(f"installing trl {TRL_VERSION} into {path}: {' '.join(command)}", file=sys.stderr)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if done.returncode != 0 and "No module named pip" in done.stderr and shutil.which("uv"):
            command = ["uv", "pip", "install", "--no-deps", "--python", sys.executable]
            command += ["--target", str(staging), f"trl=={TRL_VERSION}"]
            done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if done.returncode != 0 or _trl_version_at(staging) != TRL_VERSION:
            raise SystemExit(
                f"could not install trl=={TRL_VERSION} from PyPI (needed for the TRL side; pass --trl-path DIR "
                f"to use an existing install).\n$ {' '.join(command)}\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
            )
        if path.exists():
            shutil.rmtree(path)
        try:
            staging.rename(path)  # a complete install appears at once; an interrupted one stays in staging
        except OSError:  # another run installed it meanwhile
            if _trl_version_at(path) != TRL_VERSION:
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def _trl_version_at(path: Path) -> str | None:
    """The version of the trl package in `path` (from its dist-info, as `importlib.metadata` reads it)."""
    if not (path / "trl" / "__init__.py").is_file():
        return None
    for metadata in path.glob("trl-*.dist-info/METADATA"):
        for line in metadata.read_text().splitlines():
            if line.startswith("Version:"):
                return line.split(":", 1)[1].strip()
    return None


# --------------------------------------------------------------------------- the parent
def run_worker(side: str, args: argparse.Namespace, env: dict[str, str]) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", side]
    command += ["--arch", args.arch, "--device", args.device, "--steps", str(args.steps)]
    command += ["--warmup", str(args.warmup)]
    if args.smoke:
        command.append("--smoke")
    if args.trl_gradient_checkpointing:
        command.append("--trl-gradient-checkpointing")
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **env})
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"the {side} side failed (exit {done.returncode}):\n{done.stderr[-6000:]}")
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", choices=["gpt2", "smollm2", "tiny"], default="gpt2")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--smoke", action="store_true", help="tiny model and sizes on CPU (CI)")
    parser.add_argument(
        "--steps", type=int, default=None, help="measured steps per side (default 5; smoke 2)"
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help="unmeasured steps first (default 2; smoke 1)"
    )
    parser.add_argument(
        "--trl-path",
        type=Path,
        default=None,
        help=f"existing trl {TRL_VERSION} install (folder holding trl/)",
    )
    parser.add_argument(
        "--trl-gradient-checkpointing",
        action="store_true",
        help="enable gradient checkpointing on TRL's policy (off by default: PPOTrainer 1.12 never turns it on)",
    )
    parser.add_argument("--worker", choices=["ours", "trl"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.arch, args.device = "tiny", "cpu"
    args.steps = args.steps or (2 if args.smoke else 5)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 2)
    if args.worker == "ours":
        return ours_worker(args)
    if args.worker == "trl":
        return trl_worker(args)

    started = time.perf_counter()
    trl_path = ensure_trl(args.trl_path or DEFAULT_TRL_PATH, install=args.trl_path is None)
    ours = run_worker("ours", args, {})
    pythonpath = os.pathsep.join([str(trl_path), *filter(None, [os.environ.get("PYTHONPATH")])])
    trl = run_worker("trl", args, {"PYTHONPATH": pythonpath})

    from ppo_throughput import TARGET_S, TRL_REFERENCE_S

    sep, head = ours["runs"]["separate"], ours["runs"]["head"]
    key = f"ppo/{args.arch}"
    result = {
        "bench": "trl_ppo_compare",
        "arch": args.arch,
        "smoke": args.smoke,
        "device": trl["device"],
        "device_name": trl["device_name"],
        "threads": {"ours": sep["threads"], "trl": trl["threads"]},
        "precision": {"ours": sep["precision"], "trl": trl["precision"]},
        "rollouts_per_step": trl["rollouts_per_step"],
        "prompt_tokens": trl["prompt_tokens"],
        "new_tokens": trl["new_tokens"],
        "trl_response_tokens": trl["response_tokens"],
        "epochs_x_minibatches": trl["epochs_x_minibatches"],
        "warmup": args.warmup,
        "steps": args.steps,
        "sec_per_step": {
            "trl": trl["sec_per_step"],
            "ours_separate_value": sep["sec_per_step"],
            "ours_value_head": head["sec_per_step"],
        },
        "ratio_trl_over_ours": {
            "separate_value": round(trl["sec_per_step"] / sep["sec_per_step"], 3),
            "value_head": round(trl["sec_per_step"] / head["sec_per_step"], 3),
        },
        "step_times_s": {
            "trl": trl["step_times_s"],
            "ours_separate_value": sep["step_times_s"],
            "ours_value_head": head["step_times_s"],
        },
        "ours_breakdown_s": {"separate_value": sep["breakdown_s"], "value_head": head["breakdown_s"]},
        "trl_generation_s": trl["generation_s"],
        "trl_gc_s": trl["gc_s"],
        "optimizer": {"trl": trl["optimizer"], "ours": sep["optimizer"]},
        "trl_gradient_checkpointing_on": trl["gradient_checkpointing_on"],
        "peak_gpu_mem_gb": {
            "trl": trl["peak_gpu_mem_gb"],
            "ours_separate_value": sep["peak_gpu_mem_gb"],
            "ours_value_head": head["peak_gpu_mem_gb"],
        },
        "versions": {
            "trl": trl["trl"],
            "trl_path": str(trl_path),
            "transformers": trl["transformers"],
            "accelerate": trl["accelerate"],
            "torch": trl["torch"],
            "ours_transformers": ours["transformers"],
        },
        "trl_settings": trl["settings"],
        "trl_reference_h100_s": TRL_REFERENCE_S.get(key),
        "target_h100_s": TARGET_S.get(key),
        "wall_s": round(time.perf_counter() - started, 1),
        "notes": NOTES,
    }
    print(json.dumps(result))
    return result


# --------------------------------------------------------------------------- our side
def describe_optimizer(optimizer) -> dict:
    optimizer = getattr(
        optimizer, "optimizer", optimizer
    )  # accelerate's AcceleratedOptimizer wraps the real one
    d = optimizer.defaults
    return {"class": type(optimizer).__name__, "fused": bool(d.get("fused")), "eps": d.get("eps")}


def ours_worker(args: argparse.Namespace) -> dict:
    """Our PPO, exactly as bench/ppo_throughput.py runs it: value separate, then value head."""
    import gc

    import ppo_throughput
    import transformers

    stages = []

    class RecordingStage(ppo_throughput.RLStage):  # only remembers the stage, to report its optimizer
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            stages.append(self)

    ppo_throughput.RLStage = RecordingStage  # main() looks the name up in its module at call time
    runs = {}
    for value in ("separate", "head"):
        argv = ["--estimator", "ppo", "--arch", args.arch, "--device", args.device, "--value", value]
        argv += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
        if args.smoke:
            argv.append("--smoke")
        with contextlib.redirect_stdout(sys.stderr):  # its JSON line: keep this process's stdout to ours
            runs[value] = ppo_throughput.main(argv)
        runs[value]["optimizer"] = describe_optimizer(stages.pop().optimizer)
        gc.collect()  # drop the finished stage before the next one is built
    out = {"runs": runs, "transformers": transformers.__version__}
    print(json.dumps(out))
    return out


# --------------------------------------------------------------------------- TRL's side
def trl_worker(args: argparse.Namespace) -> dict:
    """TRL 1.12's PPOTrainer on the same models, prompts and sizes; seconds per PPO update."""
    import gc

    import accelerate
    import torch
    import transformers
    import trl
    from datasets import Dataset
    from ppo_throughput import ARCHS, build_models, device_name, random_prompts, word_tokenizer, workload
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl.experimental.ppo import PPOConfig, PPOTrainer
    from trl.experimental.ppo import ppo_trainer as trl_ppo

    from rlhf_lab.chat import format_prompt
    from rlhf_lab.device import choose_device, configure_threads

    if trl.__version__ != TRL_VERSION:
        raise SystemExit(
            f"expected trl {TRL_VERSION} on PYTHONPATH, imported {trl.__version__} ({trl.__file__})"
        )
    device = choose_device(None if args.device == "auto" else args.device)
    threads = configure_threads(device)
    cuda = device.type == "cuda"
    arch, work = ARCHS[args.arch], workload("ppo", args.smoke)
    torch.manual_seed(0)
    random.seed(0)

    # The same models and prompts as ppo_throughput.main (same seeds, same order of construction).
    tokenizer = word_tokenizer(arch["vocab"])
    policy, reward_model = build_models(arch, tokenizer, device)
    prompts = random_prompts(arch["vocab"], work["prompt_words"])
    # TRL needs a value model with a `score` head on its backbone: a second reward-shaped model, trained in fp32.
    _, value_model = build_models(arch, tokenizer, device)
    value_model = value_model.float()
    ids = [tokenizer(format_prompt(tokenizer, p), add_special_tokens=False)["input_ids"] for p in prompts]
    dataset = Dataset.from_dict({"input_ids": ids})

    batch = work["batch_size"]
    updates = args.warmup + args.steps
    settings = dict(
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=1,
        num_mini_batches=work["num_minibatches"],
        num_ppo_epochs=work["num_epochs"],
        local_rollout_forward_batch_size=batch,
        response_length=work["max_new_tokens"],
        stop_token=None,
        total_episodes=batch * updates,
        num_sample_generations=0,
        temperature=1.0,
        learning_rate=1e-6,
        kl_coef=0.05,
        bf16=cuda,
        use_cpu=device.type == "cpu",
        gradient_checkpointing=args.trl_gradient_checkpointing,
        seed=0,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    if cuda and device.index is not None:
        torch.cuda.set_device(device)

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []
            self.mark = 0.0

        def on_train_begin(self, *_, **__):
            sync()
            self.mark = time.perf_counter()

        def on_step_end(self, *_, **__):
            sync()
            now = time.perf_counter()
            self.times.append(now - self.mark)
            self.mark = now

    # Time generation inside TRL's step (train() looks `batch_generation` up in its module at call time).
    generation_times: list[float] = []
    response_tokens: list[int] = []
    original_batch_generation = trl_ppo.batch_generation

    def timed_batch_generation(model, queries, *rest, **kw):
        sync()
        t0 = time.perf_counter()
        query_responses, logits = original_batch_generation(model, queries, *rest, **kw)
        sync()
        generation_times.append(time.perf_counter() - t0)
        response_tokens.append(query_responses.shape[1] - queries.shape[1])
        return query_responses, logits

    trl_ppo.batch_generation = timed_batch_generation

    # Time spent in garbage collection (TRL calls gc.collect() twice per update; automatic collections count too).
    gc_marks: list[float] = []
    gc_seconds = [0.0]

    def on_gc(phase, _info):
        if phase == "start":
            gc_marks.append(time.perf_counter())
        elif gc_marks:
            gc_seconds[0] += time.perf_counter() - gc_marks.pop()

    class GcPerStep(TrainerCallback):
        def __init__(self):
            self.per_step: list[float] = []

        def on_step_end(self, *_, **__):
            self.per_step.append(gc_seconds[0])
            gc_seconds[0] = 0.0

    gc_per_step = GcPerStep()
    gc.callbacks.append(on_gc)

    timer = StepTimer()
    with (
        tempfile.TemporaryDirectory(prefix="trl-ppo-bench-") as out_dir,
        contextlib.redirect_stdout(sys.stderr),
    ):
        config = PPOConfig(output_dir=out_dir, **settings)
        trainer = PPOTrainer(
            args=config,
            processing_class=tokenizer,
            model=policy,
            ref_model=None,
            reward_model=reward_model,
            train_dataset=dataset,
            value_model=value_model,
            callbacks=[gc_per_step, timer],
        )
        for callback in (PrinterCallback, ProgressCallback):  # no per-step printing in the timed part
            trainer.remove_callback(callback)
        if args.trl_gradient_checkpointing:
            trainer.model.policy.gradient_checkpointing_enable()
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        checkpointing = any(
            getattr(m, "gradient_checkpointing", False) for m in trainer.model.policy.modules()
        )
        gc_seconds[0] = 0.0
        trainer.train()
    gc.callbacks.remove(on_gc)
    optimizer = describe_optimizer(trainer.optimizer)

    if len(timer.times) != updates:
        raise SystemExit(f"expected {updates} TRL updates, timed {len(timer.times)}")
    if set(response_tokens) != {work["max_new_tokens"]}:
        raise SystemExit(
            f"TRL generated {response_tokens} tokens, expected {work['max_new_tokens']} each time"
        )
    times = timer.times[args.warmup :]
    out = {
        "device": str(device),
        "device_name": device_name(device),
        "precision": "bf16 (accelerate mixed precision)" if cuda else "fp32",
        "threads": threads,
        "rollouts_per_step": batch,
        "prompt_tokens": len(ids[0]),
        "new_tokens": work["max_new_tokens"],
        "response_tokens": response_tokens[0],
        "epochs_x_minibatches": [work["num_epochs"], work["num_minibatches"]],
        "sec_per_step": round(statistics.median(times), 4),
        "step_times_s": [round(t, 4) for t in times],
        "generation_s": round(statistics.median(generation_times[args.warmup :]), 4),
        "optimizer": optimizer,
        "gc_s": round(statistics.median(gc_per_step.per_step[args.warmup :]), 4),
        "gradient_checkpointing_on": checkpointing,
        "peak_gpu_mem_gb": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if cuda else None,
        "settings": {k: v for k, v in settings.items() if k not in ("report_to", "disable_tqdm")}
        | {
            "optim": getattr(config.optim, "value", str(config.optim)),
            "local_mini_batch_size": config.local_mini_batch_size,
        },
        "trl": trl.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "torch": torch.__version__,
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
