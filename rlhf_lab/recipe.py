"""A notebook's recipe as a config for `rlhf-lab train`: its stages' settings and the data they used.

    >>> sft = lab.sft(load_demos("positive_review"));  sft.step(200)
    >>> rm = lab.reward_model(epochs=6);  rm.fit()
    >>> ppo = lab.ppo(prompts, reward=rm, gold=judge, beta=0.05);  ppo.step(60)
    >>> recipe = lab.save_recipe("runs/my_recipe", sft=sft, rl=ppo, task="positive_review", evaluate=4)
    >>> print(recipe)            # what it wrote, and: rlhf-lab train runs/my_recipe/config.yaml

The folder gets `config.yaml` and the data the stages used: `demonstrations.jsonl` (SFT's),
`prompts.jsonl` (RL's, with an `objective` column when a `RoutedReward` picks the reward model per
prompt) and the preference data each reward model and DPO fitted on: a store's labels (every label with
its criterion, annotator and verdict, in `labels.jsonl`) or a list of pairs (`pairs_<name>.jsonl`). The
config names them relative to its own folder, so the folder can be copied to a cluster and run there.

Each stage's section holds the steps it has taken and the settings that differ from what the Lab fills
in by itself (the config's defaults and the preset's), so the same config also runs on another preset or
machine. It records the stages as they are when saved, not the notebook's history: a stage stepped in
several runs, or a reward model refit in rounds (lab 08's flywheel), becomes one run of as many steps on
the data as it is now; a setting changed between steps (the dashboard's β slider) holds its last value
for every step; and the headless run puts each learned reward on one scale from its own first RL batch.
`Recipe.notes` (printed with the recipe, and atop config.yaml) says which of these apply. What a
config cannot hold is a `RecipeError` naming it, raised before anything is written: a
reward written as a Python function, an ensemble, another task's judge, a list of pairs with soft labels
(pass the store they came from).
"""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

from rlhf_lab.errors import ConfigError

ROUTE_COLUMN = "objective"  # the prompts file's column that names each prompt's reward model
KEY_ORDER = ("preset", "policy", "reward_backbone", "task", "seed", "output_dir", "demonstrations", "prompts")
KEY_ORDER += ("preferences", "sft", "dpo", "reward_model", "rl", "evaluate")


HEADER = (
    "Saved from a notebook by rlhf_lab.recipe.save_recipe: each stage's steps and the settings that differ "
    "from the lab's defaults."
)


class RecipeError(ConfigError):
    """Something in the notebook that a headless config cannot express; the message names it."""


@dataclass
class Recipe:
    """What `save_recipe` wrote: the config's path, the config itself and the data files beside it."""

    path: Path
    config: dict[str, Any]
    files: list[Path]
    notes: list[str]

    @property
    def command(self) -> str:
        """The command that trains the recipe on one machine (from the folder the notebook runs in)."""
        return f"rlhf-lab train {self.path}"

    @property
    def exports_to_trl(self) -> bool:
        """Whether `rlhf-lab export-trl` takes it: TRL 1.16 has no PPO, and its RewardTrainer starts from the
        plain backbone (no `pretrained`)."""
        from rlhf_lab.headless_rewards import reward_objectives

        estimator = (self.config.get("rl") or {}).get("estimator", "grpo")
        pretrained = any(o.settings.get("pretrained") for o in reward_objectives(self.config))
        return estimator in ("grpo", "rloo") and not pretrained

    def __str__(self) -> str:
        wrote = ", ".join(path.name for path in self.files[1:])
        lines = [
            f"Saved the recipe to {self.path}, with {wrote}. From the folder the notebook runs in (or with ! in a cell):",
            f"  one machine:  {self.command}",
            f"  four GPUs:    accelerate launch --multi_gpu --num_processes 4 -m rlhf_lab.cli train {self.path}",
        ]
        if self.exports_to_trl:
            lines.append(f"  TRL 1.16:     rlhf-lab export-trl {self.path} --out {self.path.parent / 'trl'}")
        if self.notes:
            lines += [
                "Where that run will differ from this notebook's:",
                *(f"  - {note}" for note in self.notes),
            ]
        return "\n".join(lines)


def save_recipe(
    lab: Any,
    folder: str | os.PathLike,
    *,
    sft: Any = None,
    dpo: Any = None,
    rl: Any = None,
    task: str | None = None,
    evaluate: int | None = None,
    output_dir: str | os.PathLike | None = None,
) -> Recipe:
    """Write `folder`/config.yaml and the data it names for the given stages of `lab` (see the module
    docstring). `task` names the bundled task whose gold judge a `gold` reward or `evaluate` needs
    (default: the task whose gold judge pays or watches the RL stage, `lab.ppo(..., gold=judge)`);
    `evaluate=N` has the run answer the task's test prompts N times before and after DPO/RL.
    `output_dir` is where `rlhf-lab train` will write (default `folder`/run)."""
    from rlhf_lab.bundled import TASKS
    from rlhf_lab.headless_config import check_config, load_user_data, resolve_data_paths, write_config

    if sft is None and dpo is None and rl is None:
        raise RecipeError("save_recipe needs at least one stage: sft=, dpo= or rl=.")
    if task is None and rl is not None:
        task = _judged_task(rl)
    if task is not None and task not in TASKS:
        raise RecipeError(f"task: unknown task {task!r}; bundled tasks: {', '.join(sorted(TASKS))}.")
    folder = Path(folder)
    draft = _Draft(folder)
    config: dict[str, Any] = {**_models(lab), **({"task": task} if task else {}), "seed": lab.seed}
    config["output_dir"] = str(output_dir if output_dir is not None else folder / "run")
    if sft is not None:
        config["demonstrations"] = draft.add("demonstrations.jsonl", [d.to_record() for d in sft.demos])
        config["sft"] = {"steps": sft.step_count, **stage_settings(lab, "sft", sft.config)}
        _note_changes(sft, "sft", draft)
    if dpo is not None:
        source, criterion = draft.preferences(dpo.source, "dpo", lab)
        if criterion is not None:
            raise RecipeError(
                f"dpo: its pairs are the {criterion!r} labels of the store; a config's DPO reads every label "
                "of its preferences file. Pass the store, or save those pairs as a list of pairs."
            )
        config["preferences"] = source
        config["dpo"] = {"steps": dpo.step_count, **stage_settings(lab, "dpo", dpo.config)}
        _note_changes(dpo, "dpo", draft)
    if rl is not None:
        config["rl"] = _rl_section(lab, rl, task, draft, config)
    if evaluate is not None:
        config["evaluate"] = {"samples": evaluate}
    order = [*KEY_ORDER, *config]  # the models and data first, then the stages in the order they run
    config = json.loads(json.dumps({key: config[key] for key in dict.fromkeys(order) if key in config}))
    check_config(config)  # a setting the stages would refuse fails here, before any file is written
    written = draft.write()
    path = folder / "config.yaml"
    notes = ["Where its run will differ from the notebook's:", *(f"- {note}" for note in draft.notes)]
    write_config(config, path, [HEADER, *(notes if draft.notes else [])])
    load_user_data(resolve_data_paths(config, folder))  # `rlhf-lab train`'s checks before a model loads
    return Recipe(path, config, [path, *written], draft.notes)


def _note_changes(stage: Any, section: str, draft: _Draft) -> None:
    """A note for settings changed between a stage's steps (`stage.set`, the dashboard's sliders)."""
    changed = sorted({key for _, changes in stage.hparam_changes for key in changes})
    if changed:
        first = stage.hparam_changes[0][0]
        draft.note(
            f"{section}: {', '.join(changed)} changed during the run (first after step {first}); the config "
            "runs every step with the last value."
        )


def stage_settings(lab: Any, section: str, config: Any) -> dict[str, Any]:
    """The fields of a stage's `config` that differ from what `lab` would fill in for that section by
    itself: its preset's values (`Lab.preset_settings`), the run's seed, else the field's default."""
    filled = lab.preset_settings(
        section, getattr(config, "estimator", "ppo"), getattr(config, "samples_per_prompt", None)
    )
    if section != "reward_model":
        filled["seed"] = lab.seed  # `rlhf-lab train` seeds SFT, DPO and RL with the config's seed
    settings = {}
    for field in fields(config):
        value = getattr(config, field.name)
        if field.name in filled:
            expected = filled[field.name]
        elif field.default is not MISSING:
            expected = field.default
        else:
            expected = field.default_factory()  # type: ignore[misc]
        if value != expected:
            settings[field.name] = _plain(value, f"{section}.{field.name}")
    return settings


def _rl_section(lab: Any, rl: Any, task: str | None, draft: _Draft, config: dict[str, Any]) -> dict[str, Any]:
    """The `rl` section: estimator, steps, changed settings and the reward (gold, rm or a mapping)."""
    from rlhf_lab.rl.rewards import is_judge

    settings = stage_settings(lab, "rl", rl.config)
    settings.pop("estimator", None)
    section: dict[str, Any] = {"estimator": rl.config.estimator, "steps": rl.step_count, **settings}
    _note_changes(rl, "rl", draft)
    prompts = [{"prompt": prompt} for prompt in rl.prompts]
    reward = rl.reward_source
    if is_judge(reward):
        section["reward"] = _gold(reward, task)
    else:
        models, route = _reward_models(rl)
        fitted = {name: _fitted_model(name, stage, lab, draft) for name, (stage, _) in models.items()}
        if route is not None:
            for row, objective in zip(prompts, rl.reward.routes(rl.prompts)):
                row[ROUTE_COLUMN] = objective
        _reward_entries(section, config, models, fitted, route is not None)
        if (scale := _pinned_scale(rl)) and "reward_scale" not in section:
            section["reward_scale"] = scale  # OnOneScale's fits: the config's run uses the same scale
        stages = [stage for stage, _ in models.values()]
        shared = [name for name, (stage, _) in models.items() if stages.count(stage) > 1]
        if shared:
            draft.note(
                f"Objectives {', '.join(shared)} share one reward model here; the config fits one for each "
                "(same labels and settings, so close but not identical)."
            )
    config["prompts"] = draft.add("prompts.jsonl", prompts)
    return section


def _gold(judge: Any, task: str | None) -> str:
    from rlhf_lab.raters.gold import JUDGES

    if task is None or type(judge) is not JUDGES[task]:
        owner = f"the {task!r} task's gold judge" if task else "a bundled task's gold judge"
        known = ", ".join(f"{name}: {judge_type.__name__}" for name, judge_type in JUDGES.items())
        raise RecipeError(
            f"rl: the reward is a {type(judge).__name__}, not {owner}; a config's `reward: gold` is a "
            f"task's own judge ({known})."
        )
    return "gold"


def _judged_task(rl: Any) -> str | None:
    """The bundled task whose gold judge is the RL stage's reward, or its `gold` monitor; else None."""
    from rlhf_lab.raters.gold import JUDGES

    for judge in (rl.reward_source, rl.gold):
        for task, judge_type in JUDGES.items():
            if type(judge) is judge_type:
                return task
    return None


def _reward_models(rl: Any) -> tuple[dict[str, tuple[Any, float]], Any]:
    """({name: (reward-model stage, weight)}, the route or None) of an RL stage's reward."""
    from rlhf_lab.rl.rewards import CombinedReward, RoutedReward, WeightedReward

    reward = rl.reward
    if isinstance(reward, (WeightedReward, RoutedReward)):
        models = {name: (_stage_of(fn, f"rl reward {name!r}"), w) for name, (fn, w) in reward.parts.items()}
        return models, getattr(reward, "route", None)
    if isinstance(reward, CombinedReward):
        raise RecipeError(
            f"rl: the reward is a {type(reward).__name__}, whose combine() is Python code; a config "
            "combines reward models by weights (rl.reward) or by a prompt column (rl.route) only."
        )
    return {"": (_stage_of(rl.reward_source, "rl reward"), 1.0)}, None


def _pinned_scale(rl: Any) -> dict[str, Any] | None:
    """The `rl.reward_scale` that reproduces the OnOneScale wrappers in an RL stage's reward, or None."""
    from rlhf_lab.rl.normalization import OnOneScale
    from rlhf_lab.rl.rewards import CallableReward, CombinedReward

    def fit_of(reward: Any) -> dict[str, float] | None:
        while isinstance(reward, CallableReward):
            reward = reward.fn
        if not isinstance(reward, OnOneScale):
            return None
        return {"bias": reward.normalizer.bias, "std": reward.normalizer.raw_std}

    if not isinstance(rl.reward, CombinedReward):
        return fit_of(rl.reward_source)
    fits = {name: fit_of(fn) for name, (fn, _) in rl.reward.parts.items()}
    return {name: fit for name, fit in fits.items() if fit is not None} or None


def _stage_of(reward: Any, what: str) -> Any:
    """The reward-model stage inside `reward` (through the checks and rescaling wrappers), else RecipeError."""
    from rlhf_lab.reward.stage import RewardModelStage
    from rlhf_lab.rl.normalization import OnOneScale
    from rlhf_lab.rl.rewards import CallableReward, is_judge

    inner = reward
    while isinstance(inner, (CallableReward, OnOneScale)):
        inner = inner.fn if isinstance(inner, CallableReward) else inner.reward
    if isinstance(inner, RewardModelStage):
        return inner
    if is_judge(inner):
        raise RecipeError(
            f"{what} is a gold judge inside a combination of rewards; a config combines reward models only "
            "(`rl.reward: gold` is the judge alone)."
        )
    kind = "an ensemble" if hasattr(inner, "members") else f"a {type(inner).__name__}"
    raise RecipeError(
        f"{what} is {kind}; a config's rewards are a task's gold judge or reward models, each fitted on "
        "preference data (lab.reward_model(...))."
    )


def _fitted_model(name: str, rm: Any, lab: Any, draft: _Draft) -> dict[str, Any]:
    """One reward model as config entries: its data (file, criterion) and its settings."""
    label = f"reward model {name!r}" if name else "reward model"
    if rm.pretrained is not None and rm.pretrained_task is None:
        raise RecipeError(f"rl: the {label} started from weights a config cannot name ({rm.pretrained}).")
    if rm.step_count == 0 and rm.pretrained_task is not None:  # the pre-trained weights as they are
        settings = {**stage_settings(lab, "reward_model", rm.config), "pretrained": rm.pretrained_task}
        return {"preferences": None, "criterion": None, "settings": {**settings, "fit": False}}
    if rm.step_count == 0:
        raise RecipeError(
            f"rl: the {label} was never fitted (rm.fit()); `rlhf-lab train` fits each reward model on its "
            "labels, so there is no recipe for one that learned nothing from them."
        )
    _note_changes(rm, label, draft)
    source, criterion = draft.preferences(rm.source, name or "reward_model", lab)
    settings = stage_settings(lab, "reward_model", rm.config)
    # The steps its weights took since they last started over (fit(warm_start=False) restarts them), however
    # many fit() calls that was: from the backbone (`steps`), or on top of the pre-trained weights
    # (`warm_start_steps`: `rlhf-lab train` tops a pre-trained model up).
    restarts = [i for i, fit in enumerate(rm.fits) if not fit["warm_start"]]
    rounds = rm.fits[restarts[-1] if restarts else 0 :]
    steps = sum(fit["steps"] for fit in rounds) if rounds else rm.step_count  # no fit(): stepped by hand
    pretrained = rm.pretrained_task is not None
    count, given = ("warm_start_steps", "warm_start_epochs") if pretrained else ("steps", "epochs")
    default = lab.preset_settings("reward_model").get(count, getattr(type(rm.config), count))
    settings.pop(count, None)
    if getattr(rm.config, given) is None and steps != default:
        settings[count] = steps
    if pretrained:
        settings["pretrained"] = rm.pretrained_task
        if restarts:
            draft.note(
                f"The {label} restarted from its pre-trained weights at the full learning rate "
                "(fit(warm_start=False)); the config tops them up at the warm-start rate."
            )
    if hasattr(rm.source, "pairs") and rm.fits:  # a store: labels may have come in since the last fit
        from rlhf_lab.reward.pairs import read_pairs

        cfg = rm.config
        now = len(read_pairs(rm.source, ties=cfg.ties, both_bad=cfg.both_bad, soft=cfg.soft_labels))
        if now != len(rm.pairs):
            draft.note(
                f"The {label} was last fitted when its labels made {len(rm.pairs)} pairs; they make {now} now, "
                "and the config fits on all of them."
            )
    if len(rounds) > 1:
        draft.note(
            f"The {label} was fitted in {len(rounds)} rounds (on {rounds[0]['pairs']} to "
            f"{rounds[-1]['pairs']} training pairs); the config fits it once, on the labels as they are now."
        )
    return {"preferences": source, "criterion": criterion, "settings": settings}


def _reward_entries(
    section: dict[str, Any],
    config: dict[str, Any],
    models: dict[str, tuple[Any, float]],
    fitted: dict[str, dict[str, Any]],
    routed: bool,
) -> None:
    """`rl.reward` (and `rl.route`, the top-level `preferences` and `reward_model`) for the reward models."""
    only = fitted.get("")
    files = [entry["preferences"] for entry in fitted.values() if entry["preferences"] is not None]
    if files and "preferences" not in config:  # `fit: false` models have none: they fit on nothing
        config["preferences"] = files[0]
    if only is not None and only["criterion"] is None and only["preferences"] == config.get("preferences"):
        section["reward"] = "rm"
        if only["settings"]:
            config["reward_model"] = only["settings"]
        return
    shared = dict(next(iter(fitted.values()))["settings"])  # settings every model has: said once
    for entry in fitted.values():
        shared = {key: value for key, value in shared.items() if entry["settings"].get(key, ...) == value}
    if shared:
        config["reward_model"] = shared
    entries = {}
    for name, entry in fitted.items():
        own = {key: value for key, value in entry["settings"].items() if key not in shared}
        weight = models[name][1]
        if routed and weight != 1.0:
            raise RecipeError(
                f"rl: the routed objective {name!r} has weight {weight}; with rl.route each prompt is "
                "scored by one reward model, unweighted."
            )
        if not routed:
            own["weight"] = weight
        if entry["criterion"] is not None:
            own["criterion"] = entry["criterion"]
        if entry["preferences"] not in (None, config.get("preferences")):
            own["preferences"] = entry["preferences"]
        entries[name or "rm"] = own
    section["reward"] = entries
    if routed:
        section["route"] = ROUTE_COLUMN


class _Draft:
    """A recipe's data files, decided first and written together once the config checks out, and its
    notes: where the config's run will differ from the notebook's."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.stores: dict[int, tuple[str, Any]] = {}  # id(store): (path, store)
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def add(self, name: str, rows: list[dict[str, Any]]) -> str:
        self.rows[name] = rows
        return name  # the config reads its data files from its own folder

    def preferences(self, source: Any, name: str, lab: Any) -> tuple[str, str | None]:
        """(file, criterion or None) that give a config's reward model or DPO the pairs of `source`."""
        if hasattr(source, "to_jsonl") and hasattr(source, "labels"):  # a preference store
            return self._store(source), None
        records = _pair_records(source, name)
        store = lab.store if lab.has_store else None
        criterion = _criterion_of(source, store)
        if criterion is not ...:
            return self._store(store), criterion
        soft = [i for i, record in enumerate(records) if record.target != 1.0 or record.margin is not None]
        if soft:
            raise RecipeError(
                f"{name}: pair {soft[0]} has a soft label or margin (target {records[soft[0]].target}), which a "
                "pairs file cannot hold; fit on the store the pairs came from (lab.reward_model(lab.store)), "
                "or on pairs with one clear winner each."
            )
        rows = [{"prompt": r.prompt, "chosen": r.chosen, "rejected": r.rejected} for r in records]
        return self.add(f"pairs_{name}.jsonl", rows), None

    def _store(self, store: Any) -> str:
        if id(store) not in self.stores:
            filename = "labels.jsonl" if not self.stores else f"labels_{len(self.stores) + 1}.jsonl"
            self.stores[id(store)] = (filename, store)
        return self.stores[id(store)][0]

    def write(self) -> list[Path]:
        self.folder.mkdir(parents=True, exist_ok=True)
        written = []
        for filename, store in self.stores.values():
            store.to_jsonl(self.folder / filename)
            written.append(self.folder / filename)
        for name, rows in self.rows.items():
            path = self.folder / name
            with open(path, "w", encoding="utf-8") as f:
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
            written.append(path)
        return written


def _pair_records(source: Any, name: str) -> list[Any]:
    from rlhf_lab.reward.pairs import as_pair_records

    try:
        return as_pair_records(source)
    except (TypeError, ValueError) as error:
        raise RecipeError(f"{name}: its preference data cannot be written as pairs: {error}") from None


def _criterion_of(pairs: Any, store: Any) -> Any:
    """The criterion c with `store.pairs(criterion=c)` (None: `store.pairs()`) equal to `pairs`, else
    `...`: a list taken from the lab's store is then saved as the store's labels and a filter."""
    from rlhf_lab.store.records import PreferencePair

    if store is None or not isinstance(pairs, list) or not pairs:
        return ...
    if not all(isinstance(pair, PreferencePair) and pair.label_ids for pair in pairs):
        return ...
    criteria = {pair.criterion for pair in pairs}
    if len(criteria) != 1:
        return ...
    criterion = criteria.pop()
    again = store.pairs(criterion=criterion) if criterion is not None else store.pairs()
    return criterion if again == pairs else ...


def _models(lab: Any) -> dict[str, Any]:
    """`preset`, or `policy` and `reward_backbone` for a lab built with Lab.from_pretrained."""
    if lab.preset is not None:
        return {"preset": lab.preset.name}
    policy = getattr(lab.policy, "name_or_path", "")
    if not policy:
        raise RecipeError(
            "the lab's policy has no name or folder (Lab.from_pretrained sets one); save it first with "
            "policy.save_pretrained(folder) and build the lab with Lab.from_pretrained(folder)."
        )
    return {"policy": policy, "reward_backbone": lab.reward_spec}


def _plain(value: Any, where: str) -> Any:
    """`value` as YAML writes it (a NumPy number as a Python one); RecipeError naming `where` otherwise."""
    from rlhf_lab.stages.checkpoint import plain_value

    value = plain_value(value)  # np.int64(8) -> 8
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError):
        raise RecipeError(
            f"{where} is {value!r}, which a config cannot hold (text, numbers and lists only)."
        ) from None
