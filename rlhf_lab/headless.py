"""Headless training from one YAML file, on one process or data-parallel under `accelerate launch`.

    $ rlhf-lab train examples/ppo_tiny.yaml
    $ accelerate launch --multi_gpu --num_processes 2 -m rlhf_lab.cli train examples/ppo_tiny.yaml
    $ rlhf-lab train examples/ppo_tiny.yaml --resume     # a run that stopped, from its checkpoints

    >>> from rlhf_lab.headless import load_config, train
    >>> summary = train(load_config("examples/ppo_tiny.yaml"))

The config (every section but `task` is optional; an unknown key or a setting its stage would refuse
is an error before any model loads, naming the section and the field)::

    preset: tiny                  # a preset name, or instead:
    # policy: HuggingFaceTB/SmolLM2-135M-Instruct
    # reward_backbone: sentence-transformers/all-MiniLM-L6-v2   (with policy; used by reward: rm)
    task: positive_review         # bundled rlhf_lab.bundled task: its prompts, demos, preferences, gold judge
    # Your own data instead (JSONL or Parquet, checked like the lab's importers; each replaces the task's;
    # a relative path is read from this file's folder, so a folder with a config and its data runs anywhere):
    # demonstrations: data/demos.jsonl      # prompt + response (or completion), or chat `messages`
    # prompts: data/prompts.parquet         # a `prompt` column (RL)
    # preferences: data/prefs.jsonl         # prompt, chosen, rejected (or label records): reward model, DPO
    seed: 0
    output_dir: runs/ppo_tiny     # sft/, reward_model[/<name>]/, rl/, summary.json, config.yaml (from the
                                  # folder the command runs in, as model folders under `policy` are)
    threads: null                 # torch CPU threads (default: the cores split between ranks)
    sft:                          # supervised warm-up on the task's demos
      steps: 20
      learning_rate: 2.0e-4       # ...any SFTConfig field
    reward_model:                 # read when rl.reward is rm or a mapping of reward models
      epochs: 2                   # fit() passes over the task's bundled preference pairs
      # pretrained: positive_review   # start from weights fitted on that task's 1,800 rated pairs
      # fit: false                    # with pretrained: use those weights as they are, no top-up
      learning_rate: 1.0e-4       # ...any RMConfig field
    dpo:                          # DPO on the preferences (after SFT, before RL)
      steps: 10
      beta: 0.1                   # ...any DPOConfig field
    rl:
      estimator: ppo              # ppo | rloo | grpo | reinforce
      steps: 2
      reward: gold                # gold: the task's gold judge; rm: a reward model fitted on the preferences;
                                  # or {name: {criterion, weight, ...}}: a reward model per objective, weighted
                                  # or routed (route: COLUMN), as in lab 09 (see rlhf_lab.headless_rewards)
      batch_size: 8               # ...any RLConfig field (beta, learning_rate, max_new_tokens, ...)
    log_to: tensorboard           # or wandb / trackio, a list of them, or {backend: wandb, project: x}
    export: true                  # write output_dir/export/{policy,reward_model} (rlhf_lab.export)
    checkpoint_every: 50          # SFT, DPO and RL save every 50 steps too, not only at the end; after a
                                  # crash `rlhf-lab train CONFIG --resume` goes on from there
                                  # (rlhf_lab.headless_resume)
    flywheel: {first_pairs: 64, rounds: 3, pairs: 16}  # with rl.reward: rm, as lab 08: a simulated
                                  # annotator labels the policy's answers before the reward model's first
                                  # fit and between RL rounds, and it is refitted (rlhf_lab.headless_flywheel)
    evaluate: {samples: 4}        # the gold judge on the task's test prompts, before vs after DPO/RL
                                  # (win rate with its 95% interval; see rlhf_lab.headless_eval)

It shows a progress bar per stage on stderr (`progress=True`, what `rlhf-lab train` passes) and
prints one JSON summary line (also written to output_dir/summary.json, beside config.yaml: the config
it ran, so `rlhf-lab train output_dir/config.yaml` runs it again). TensorBoard logs go to
output_dir/tensorboard unless the log_to entry names a log_dir.

On a machine without GPUs, `--multi_gpu` still starts N CPU processes (gloo); accelerate's
`--cpu` flag would start only one (its multi-CPU mode goes through mpirun). torchrun works too:
`python -m torch.distributed.run --nproc_per_node 2 -m rlhf_lab.cli train CONFIG.yaml`.

Scale-out: under `accelerate launch` (or torchrun) with more than one process, SFT and the reward
model run replicated (same seed, same data, so identical on every rank) and RL is data-parallel:
rank r draws its rollouts from every world_size-th prompt starting at r, samples with its own
seed (reseeded from the rank and the step count at each checkpoint, so a resumed run samples what
the uninterrupted one would have), and gradients are averaged across ranks before each optimizer
step (see rlhf_lab.rl.distributed). Ranks start from identical weights and stay identical; rank 0 saves
the checkpoints and prints the summary, every rank writes output_dir/ranks/rank<r>.json with a
SHA-256 of its trained weights. An error that stops one rank (kl_limit, a NaN) stops every rank at
the same step boundary, before any weights change (rlhf_lab.rl.distributed.stopping_together).
`evaluate:` splits the test prompts between the ranks and gathers the answers. Limit: RL metrics are
rank 0's own (not averaged).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from rlhf_lab.errors import ConfigError
from rlhf_lab.headless_config import (  # noqa: F401  (load_config and check_config: the public API here)
    DATA_FILES,
    check_config,
    load_config,
    load_user_data,
    resolve_data_paths,
    section_settings,
    tracking_specs,
    write_config,
)
from rlhf_lab.headless_eval import compare, evaluate_settings, held_out_answers
from rlhf_lab.headless_flywheel import Flywheel, flywheel_settings, rl_sampling, round_ends
from rlhf_lab.headless_resume import RunProgress, check_same_run, run_steps, unwrapped
from rlhf_lab.headless_rewards import RewardObjective, combined_reward, describe_reward, reward_objectives

RANK_SEED_STRIDE = 1000  # rank r samples with seed + 1000 * r


def _distributed() -> tuple[int, int]:
    """(rank, world_size); initialises the process group through accelerate when launched by it."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1  # single process: never import accelerate (fast path)
    from accelerate import PartialState

    # Reads the launcher's env and inits torch.distributed; without CUDA accelerate only picks
    # its multi-CPU (gloo) mode when told cpu=True.
    cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
    state = PartialState(cpu=cpu)
    return state.process_index, state.num_processes


def _gold_reward(judge: Any):
    def gold(prompts: list[str], responses: list[str]) -> list[float]:
        return [float(judge.score(p, r)) for p, r in zip(prompts, responses)]

    gold.__name__ = "gold"
    return gold


def _first_last(rows: list[dict[str, Any]], metric: str, name: str) -> dict[str, Any]:
    """{name_first, name_last}: `metric` in the first and last rows; None for both when no step ran."""
    return {
        f"{name}_first": rows[0].get(metric) if rows else None,
        f"{name}_last": rows[-1].get(metric) if rows else None,
    }


def _objectives_last(rows: list[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
    """{objectives_last: each reward model's mean score (on one scale) in the last step}, for several."""
    names = [objective.name for objective in reward_objectives(config) if objective.name is not None]
    if not names:
        return {}
    return {
        "objectives_last": {
            name: rows[-1].get(f"objective/scores/{name}") if rows else None for name in names
        }
    }


def train(config: dict[str, Any], *, progress: bool = False, resume: bool = False) -> dict[str, Any]:
    """Build the stages via Lab, run them, save checkpoints and exports; returns the summary dict.

    `progress=True` shows a tqdm bar per stage (rank 0 only). `resume=True` picks up the run that
    output_dir holds where its checkpoints left it (rlhf_lab.headless_resume).
    """
    from rlhf_lab.bundled import load_demos, load_prompts, preference_pairs
    from rlhf_lab.lab import Lab
    from rlhf_lab.raters import get_judge
    from rlhf_lab.reward.stage import RewardModelStage
    from rlhf_lab.rl import RLStage
    from rlhf_lab.rl.distributed import params_sha256
    from rlhf_lab.stages.dpo import DPOStage
    from rlhf_lab.stages.sft import SFTStage

    config = check_config(dict(config))
    started = time.perf_counter()
    rank, world = _distributed()
    seed = int(config.get("seed", 0))
    task = config.get("task")
    out = Path(config.get("output_dir") or "rlhf_lab_runs/headless")
    user_data = load_user_data(config)  # bad rows fail here, before any model loads
    # `rlhf-lab train <output_dir>/config.yaml` runs it again: its data paths made absolute, as a copy
    # beside the outputs would read relative ones from output_dir.
    ran_config = resolve_data_paths(config, Path.cwd())
    if resume:
        check_same_run(ran_config, out / "config.yaml")
    if rank == 0:  # written before training, so that a run that stops can be resumed
        out.mkdir(parents=True, exist_ok=True)
        write_config(ran_config, out / "config.yaml")
    saves = RunProgress(out, resume=resume, writer=rank == 0)
    every = config.get("checkpoint_every")
    show = progress and rank == 0
    threads = config.get("threads") or (max(1, (os.cpu_count() or 1) // world) if world > 1 else None)
    lab_kwargs = {
        "seed": seed,
        "threads": threads,
        "store": out / "labels.sqlite",
        "device": "cpu" if world > 1 else None,
    }
    if world > 1 and torch.cuda.is_available():
        lab_kwargs["device"] = f"cuda:{int(os.environ.get('LOCAL_RANK', rank)) % torch.cuda.device_count()}"
    if "policy" in config:
        lab = Lab.from_pretrained(config["policy"], config.get("reward_backbone"), **lab_kwargs)
    else:
        lab = Lab.from_preset(config.get("preset", "tiny"), **lab_kwargs)
    summary: dict[str, Any] = {"task": task, "preset": config.get("preset"), "world_size": world}
    summary["data"] = {key: str(config[key]) for key in DATA_FILES if config.get(key)}
    for objective in reward_objectives(config):  # a reward model's own file, if it names one
        if objective.preferences:
            summary["data"][f"preferences/{objective.name}"] = str(objective.preferences)
    trackers = []
    if rank == 0:
        from rlhf_lab.tracking import log_to

        trackers = [
            log_to([], backend, **options) for backend, options in tracking_specs(config.get("log_to"), out)
        ]

    def watch(stage: Any, prefix: str = "") -> None:
        for tracker in trackers:
            tracker.attach(stage, prefix=prefix)

    exports: dict[str, str] = {}
    last_policy_stage: Any = None
    export = bool(config.get("export", True)) and rank == 0

    # The trackers are closed however the run ends: a stage that raises still flushes its rows.
    try:

        def checkpoint(stage: Any, name: str) -> None:
            """Rank 0 saves `stage` under out/<name>, recorded as this run's checkpoint."""
            if rank == 0:
                stage.save(out / name)
                saves.record(name)

        def resumed(name: str, load: Any, trains_policy: bool = True) -> Any:
            """The stage this run saved under out/<name> (on --resume), its policy made the lab's; or None."""
            folder = saves.saved(name)
            if folder is None:
                return None
            stage = load(folder)
            saves.resumed[name] = stage.step_count
            if trains_policy:  # the stages after it start from its policy, as from one trained here
                lab.policy = unwrapped(stage.policy)
            return stage

        def train_policy(name: str, stage: Any, steps: int) -> Any:
            """SFT or DPO: up to `steps` steps, the loss summarised, checkpoints saved under out/<name>."""
            watch(stage)
            rows = run_steps(
                stage, steps, name=name, every=every, save=lambda: checkpoint(stage, name), progress=show
            )
            loss = f"loss/{name}"
            summary[name] = {"steps": steps, **_first_last(rows, loss, "loss")}
            return stage

        flywheel: Flywheel | None = None
        if config.get("sft"):
            own, sft_cfg = section_settings(config, "sft")
            sft_cfg.setdefault("seed", seed)  # a config exported from a notebook may carry its own
            sft = resumed("sft", lambda path: SFTStage.load(path, device=lab.device, clock=lab.clock))
            if sft is None:
                sft = lab.sft(user_data.get("demos") or load_demos(task), **sft_cfg)
            last_policy_stage = train_policy("sft", sft, own["steps"])

        # The policy DPO and RL start from, answering the test prompts: the same on every rank.
        evaluation = evaluate_settings(config)
        if evaluation:
            length = (config.get("rl") or {}).get("max_new_tokens")  # None: the lab's default, as RL's
            # Each rank answers its share of the prompts; all of them get every answer.
            held_out = dict(
                samples=evaluation["samples"], seed=seed, max_new_tokens=length, rank=rank, world=world
            )
            test_prompts, before = held_out_answers(lab, task, **held_out)

        if config.get("dpo"):
            own, dpo_cfg = section_settings(config, "dpo")
            dpo_cfg.setdefault("seed", seed)
            pairs = user_data["preferences"] if "preferences" in user_data else preference_pairs(task)
            dpo = resumed(
                "dpo", lambda path: DPOStage.load(path, data=pairs, device=lab.device, clock=lab.clock)
            )
            if dpo is None:
                dpo = lab.dpo(pairs, **dpo_cfg)
            last_policy_stage = train_policy("dpo", dpo, own["steps"])

        def fit_reward_model(objective: RewardObjective) -> Any:
            """A reward model fitted on the objective's pairs, summarised, saved under out/<folder>, exported."""
            rm_own, rm_cfg = section_settings({"reward_model": objective.settings}, "reward_model")
            pairs = user_data["objective_pairs"][objective.name]
            if flywheel:  # each round's labels join the data
                pairs = flywheel.data(pairs)
            rm = resumed(
                objective.folder,
                lambda path: RewardModelStage.load(path, data=pairs, device=lab.device, clock=lab.clock),
                trains_policy=False,
            )
            if rm is None:
                rm = lab.reward_model(pairs, pretrained=rm_own["pretrained"], **rm_cfg)
            watch(rm, prefix="" if objective.name is None else f"{objective.name}/")  # helpful/rm/accuracy
            # A pre-trained model is topped up with your labels (warm_start_steps), as rm.fit() does in a
            # notebook; any other starts from its backbone.
            warm = rm_own["pretrained"] is not None
            if objective.folder in saves.resumed:  # fitted before the run stopped
                fit = {**(rm.fits[-1] if rm.fits else {}), "resumed": True}
            elif rm_own["fit"]:
                fit = rm.fit(epochs=rm_own["epochs"], warm_start=warm, progress=show)
            else:  # the pre-trained weights as they are
                fit = {"steps": 0, "pretrained": rm_own["pretrained"]}
            fitted = {k: v for k, v in fit.items() if isinstance(v, (int, float, str))}
            if objective.name is None:
                summary["reward_model"] = fitted
            else:
                summary.setdefault("reward_models", {})[objective.name] = fitted
            if objective.folder not in saves.resumed:
                checkpoint(rm, objective.folder)
            if export:
                exports[objective.folder] = str(rm.export(out / "export" / objective.folder))
            return rm

        if config.get("rl"):
            own, rl_cfg = section_settings(config, "rl")
            steps, reward_kind = own["steps"], own["reward"]
            estimator = rl_cfg.pop("estimator", "ppo")
            judge = get_judge(task) if task else None
            prompts = user_data.get("prompts") or [row["prompt"] for row in load_prompts(task, "train")]
            wheel_settings = flywheel_settings(config)
            if (
                wheel_settings
            ):  # before the reward model: its first labels (a resumed run's: all) are its data
                flywheel = Flywheel(
                    lab,
                    judge,
                    prompts,
                    wheel_settings,
                    rl_steps=steps,
                    seed=seed,
                    folder=out / "flywheel",
                    writer=rank == 0,
                    resume=resume,
                )
                flywheel.label_first(rl_sampling({**lab.preset_settings("rl", estimator), **rl_cfg}))
                flywheel.commit()
            if reward_kind == "gold":
                reward: Any = _gold_reward(judge)
            else:
                models = {
                    objective.name: fit_reward_model(objective) for objective in reward_objectives(config)
                }
                reward = combined_reward(models, config, user_data.get("routes"))
            rl_cfg.setdefault("seed", seed)  # same seed on every rank: identical value head and reference
            share = prompts[rank::world]
            rl = resumed(
                "rl",
                lambda path: RLStage.load(
                    path, reward=reward, gold=judge, prompts=share, device=lab.device, clock=lab.clock
                ),
            )
            if rl is None:
                rl = lab.rl(share, reward, estimator=estimator, gold=judge, **rl_cfg)
            reseed = None
            if world > 1:
                # Built identically on every rank; from here on each rank samples differently. A checkpoint
                # holds rank 0's random state only, so each rank reseeds from its rank and the step count at
                # every checkpoint boundary, where a resumed run starts too: the same stream either way.
                def reseed() -> None:
                    torch.manual_seed(seed + RANK_SEED_STRIDE * rank + rl.step_count)

            watch(rl)
            ends = round_ends(steps, flywheel.settings["rounds"]) if flywheel else [steps]
            for number, end in enumerate(ends, 1):
                if flywheel and rl.step_count > end and flywheel.rounds_done < number:
                    raise ConfigError(
                        f"--resume: rl has taken {rl.step_count} steps, past the end of flywheel round "
                        f"{number} (step {end}), which it never finished: rl.steps changed. Keep it, or start "
                        "a new run (another output_dir)."
                    )
                if not flywheel or rl.step_count <= end:  # a round it had ended before it stopped: skipped
                    rows = run_steps(
                        rl,
                        end,
                        name="rl",
                        every=every,
                        save=lambda: checkpoint(rl, "rl"),
                        progress=show,
                        before_chunk=reseed,
                    )
                if flywheel and number < len(ends) and flywheel.rounds_done < number:
                    flywheel.turn(models[None], rl, progress=show)  # label, refit, RL goes on against it
                    checkpoint(models[None], "reward_model")
                    flywheel.commit()  # rank 0 writes it
                    if export:
                        exports["reward_model"] = str(models[None].export(out / "export" / "reward_model"))
            if flywheel:
                summary["flywheel"] = {"first_labels": flywheel.first_labels, "rounds": flywheel.rows}
            summary["rl"] = {
                "estimator": estimator,
                "reward": describe_reward(config),
                "steps": steps,
                **_first_last(rows, "objective/scores", "scores"),
                "kl_last": rows[-1].get("objective/kl") if rows else None,
                **_objectives_last(rows, config),
                "rl_config": {k: v for k, v in dataclasses.asdict(rl.config).items() if k in rl_cfg},
            }
            trained = rl.params
            last_policy_stage = rl
        else:
            trained = list(lab.policy.parameters())
        if evaluation:
            _, after = held_out_answers(lab, task, **held_out)
            summary["evaluation"] = compare(task, test_prompts, before, after)
    finally:
        for tracker in trackers:
            tracker.close()
    if export and last_policy_stage is not None:
        # The lab's policy is the model every stage trained in place; the last stage's card describes it.
        exports["policy"] = str(last_policy_stage.export(out / "export" / "policy"))
    if exports:
        summary["exports"] = exports

    if saves.resumed:
        summary["resumed"] = saves.resumed  # stage: the steps its checkpoint had taken
    summary["param_sha256"] = params_sha256(trained)
    summary["seconds"] = round(time.perf_counter() - started, 2)
    summary["output_dir"] = str(out)
    out.mkdir(parents=True, exist_ok=True)
    if world > 1:
        (out / "ranks").mkdir(exist_ok=True)
        rank_info = {
            "rank": rank,
            "world_size": world,
            "param_sha256": summary["param_sha256"],
            "scores_first": summary.get("rl", {}).get("scores_first"),  # differs: own prompts and seed
        }
        (out / "ranks" / f"rank{rank}.json").write_text(json.dumps(rank_info), encoding="utf-8")
        torch.distributed.barrier()
    if rank == 0:
        (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        print(json.dumps(summary), flush=True)
    if world > 1:
        torch.distributed.destroy_process_group()
    return summary
