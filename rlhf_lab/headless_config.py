"""Reading and checking the YAML config of `rlhf-lab train` and `rlhf-lab export-trl`, and the data
files it names, before any model loads (the format: the `rlhf_lab.headless` module docstring).

    >>> from rlhf_lab.headless_config import load_config
    >>> config = load_config("examples/ppo_tiny.yaml")     # ConfigError naming the field if anything is off
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rlhf_lab.config_checks import whole_number_setting
from rlhf_lab.errors import ConfigError
from rlhf_lab.headless_eval import check_evaluate
from rlhf_lab.headless_flywheel import check_flywheel
from rlhf_lab.headless_resume import check_checkpoint_every, write_text_atomically
from rlhf_lab.headless_rewards import check_reward, objective_pairs, prompt_routes, reward_objectives

TOP_LEVEL = {
    "preset",
    "policy",
    "reward_backbone",
    "reward_model",
    "task",
    "seed",
    "output_dir",
    "threads",
    "sft",
    "dpo",
    "rl",
    "demonstrations",
    "prompts",
    "preferences",
    "log_to",
    "export",
    "evaluate",
    "checkpoint_every",
    "flywheel",
}
DATA_FILES = ("demonstrations", "prompts", "preferences")


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a headless YAML config (see the module docstring)."""
    import yaml

    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    if not isinstance(config, dict):
        raise ConfigError(f"the config must be a mapping, got {type(config).__name__}.")
    return resolve_data_paths(check_config(config), Path(path).parent)


def resolve_data_paths(config: dict[str, Any], base: str | os.PathLike) -> dict[str, Any]:
    """`config` with each relative data file it names (demonstrations, prompts, preferences, and an
    objective's own preferences under rl.reward) read from `base`, the config file's folder, so a folder
    holding a config and its data runs from anywhere. Model folders and output_dir stay relative to
    where the command runs.

    A file found only relative to the current folder (how configs were read before) is still used, with a
    warning, rather than failing a config that used to run.
    """
    import warnings

    def resolve(where: str, value: Any) -> Any:
        if not isinstance(value, (str, os.PathLike)) or Path(value).is_absolute():
            return value
        beside_config = Path(base) / value
        if not beside_config.exists() and Path(value).exists():
            warnings.warn(
                f"{where}: {value} is not beside the config (in {base}); reading it from the current folder. "
                "Config paths are relative to the config's folder: write it as "
                f"{os.path.relpath(Path(value).resolve(), Path(base).resolve())}.",
                FutureWarning,
                stacklevel=3,
            )
            return str(Path(value).resolve())
        return str(beside_config.resolve())

    config = dict(config)
    for key in DATA_FILES:
        if config.get(key):
            config[key] = resolve(key, config[key])
    rl = config.get("rl")
    if isinstance(rl, dict) and isinstance(rl.get("reward"), dict):
        rewards = {}
        for name, entry in rl["reward"].items():
            if isinstance(entry, dict) and entry.get("preferences"):
                entry = {
                    **entry,
                    "preferences": resolve(f"rl.reward.{name}.preferences", entry["preferences"]),
                }
            rewards[name] = entry
        config["rl"] = {**rl, "reward": rewards}
    return config


def write_config(
    config: dict[str, Any], path: str | os.PathLike, comments: list[str] | tuple[str, ...] = ()
) -> None:
    """`config` as the YAML `load_config` reads, keys in their order, each of `comments` a `#` line on top.
    Paths given as Path objects become text."""
    import yaml

    plain = json.loads(json.dumps(config, default=str))
    header = "".join(f"# {line}\n" for line in comments)
    # on a --resume the other ranks read a run's config.yaml while rank 0 writes it again
    write_text_atomically(Path(path), header + yaml.safe_dump(plain, sort_keys=False))


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    unknown = set(config) - TOP_LEVEL
    if unknown:
        raise ConfigError(f"unknown config keys {sorted(unknown)}; known: {sorted(TOP_LEVEL)}.")
    if "task" not in config and not any(config.get(key) for key in DATA_FILES):
        raise ConfigError(
            "the config needs a task (a bundled rlhf_lab.bundled task, e.g. positive_review) or data files "
            f"({', '.join(DATA_FILES)})."
        )
    if "preset" in config and "policy" in config:
        raise ConfigError("give either preset or policy, not both.")
    for section in ("sft", "reward_model", "dpo", "rl"):
        if config.get(section) is not None and not isinstance(config[section], dict):
            raise ConfigError(f"{section} must be a mapping of settings.")
    for key in DATA_FILES:
        if config.get(key) is not None and not isinstance(config[key], (str, os.PathLike)):
            raise ConfigError(f"{key} must be a file path (.jsonl or .parquet), got {config[key]!r}.")
    rl = config.get("rl") or {}
    check_reward(config)
    needs = {
        "sft": ("demonstrations", config.get("sft")),
        "dpo": ("preferences", config.get("dpo")),
        "rl": ("prompts", rl),
    }
    for what, (key, wanted) in needs.items():
        if wanted and "task" not in config and not config.get(key):
            raise ConfigError(f"{what} needs {key}: name a file, or a bundled task.")
    if rl and rl.get("reward", "gold") == "gold" and "task" not in config:
        raise ConfigError(
            "rl.reward: gold needs a bundled task (its gold judge); use reward: rm with preferences."
        )
    tracking_specs(config.get("log_to"), Path("."))  # checks the backend names
    check_checkpoint_every(config)
    check_evaluate(config)
    check_flywheel(config)
    check_stage_settings(config)
    return config


# The keys a section reads itself with their defaults, its step count first; its other keys are fields
# of its stage's config.
SECTION_KEYS: dict[str, dict[str, Any]] = {
    "sft": {"steps": 20},
    "dpo": {"steps": 10},
    "reward_model": {"epochs": None, "pretrained": None, "fit": True},
    "rl": {"steps": 10, "reward": "gold", "route": None},
}


def section_settings(config: dict[str, Any], section: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the section's own keys with defaults filled in, the rest: its stage's config fields)."""
    fields = dict(config.get(section) or {})
    own = {key: fields.pop(key, default) for key, default in SECTION_KEYS[section].items()}
    return own, fields


def check_stage_settings(config: dict[str, Any]) -> None:
    """ConfigError (a ValueError), naming the section, for a setting its stage would refuse: an unknown
    field, a wrong type, a value out of range, or a step count that is not a whole number.

    It runs before any model loads, so a typo in `rl` fails at once instead of after SFT has trained.
    The batch's shape (RL's minibatch split) is left to the stage: the Lab sizes the batch from its preset.
    """
    from rlhf_lab.bundled import TASKS

    if "task" in config and config["task"] not in TASKS:
        raise ConfigError(
            f"task: unknown task {config['task']!r}; bundled tasks: {', '.join(sorted(TASKS))}."
        )
    for section in ("sft", "dpo", "reward_model", "rl"):
        check_section(section, config.get(section))
    for objective in reward_objectives(config):
        if objective.name is not None:  # a reward model of its own: the reward_model section + its overrides
            check_section("reward_model", objective.settings, where=f"rl.reward.{objective.name}")


def check_section(section: str, settings: dict[str, Any] | None, where: str | None = None) -> None:
    """ConfigError naming `where` (default: the section) for a setting its stage would refuse."""
    from rlhf_lab.bundled import TASKS
    from rlhf_lab.reward.config import RMConfig
    from rlhf_lab.rl.config import RLConfig
    from rlhf_lab.stages.configs import make_config
    from rlhf_lab.stages.dpo import DPOConfig
    from rlhf_lab.stages.sft import SFTConfig

    config_cls = {"sft": SFTConfig, "dpo": DPOConfig, "reward_model": RMConfig, "rl": RLConfig}[section]
    where = where or section
    own, fields = section_settings({section: settings}, section)
    count_key = next(iter(SECTION_KEYS[section]))
    count, least = own[count_key], 1 if count_key == "epochs" else 0  # 0 steps: the stage is only built
    pretrained = own.get("pretrained")
    if pretrained is not None and pretrained not in TASKS:
        raise ConfigError(
            f"{where}.pretrained must name a bundled task whose rated pairs the reward model starts from "
            f"({', '.join(sorted(TASKS))}), got {pretrained!r}."
        )
    if "fit" in own and not isinstance(own["fit"], bool):
        raise ConfigError(f"{where}.fit must be true or false, got {own['fit']!r}.")
    if own.get("fit") is False and pretrained is None:
        raise ConfigError(
            f"{where}.fit: false leaves the reward model as it starts, which without `pretrained` is a random "
            "head: its scores would be noise."
        )
    if count is not None:
        whole_number_setting(count, f"{where}.{count_key}", least=least)
    try:
        stage_config = make_config(None, config_cls, fields)
        if isinstance(stage_config, RLConfig):
            stage_config.check_settings()
        else:
            stage_config.validate()
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {error}") from None


def tracking_specs(log_to: Any, out: Path) -> list[tuple[str, dict[str, Any]]]:
    """(backend, options) pairs from the config's log_to: a name, a mapping with `backend`, or a list."""
    from rlhf_lab.tracking import BACKENDS

    entries = [] if log_to in (None, False) else log_to if isinstance(log_to, list) else [log_to]
    specs = []
    for entry in entries:
        options = dict(entry) if isinstance(entry, dict) else {"backend": entry}
        backend = options.pop("backend", None)
        if backend not in BACKENDS:
            raise ConfigError(f"log_to: unknown tracker {backend!r}; known: {', '.join(BACKENDS)}.")
        if backend == "tensorboard":
            options.setdefault("log_dir", str(out / "tensorboard"))
        specs.append((backend, options))
    return specs


def prompt_rows(path: str | os.PathLike) -> list[tuple[int, str, dict[str, Any]]]:
    """(row number, prompt, row) per row of a JSONL/Parquet file: a `prompt` per row (text, or one user
    message in chat form); the row's other columns (e.g. the one `rl.route` reads) come along."""
    from rlhf_lab.store.io import PreferenceImportError, read_rows

    name, rows = Path(path).name, []
    for number, row in read_rows(path):
        prompt = row.get("prompt") if isinstance(row, dict) else None
        if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict):
            prompt = prompt[-1].get("content")  # chat form: the last (user) message
        if not isinstance(prompt, str) or not prompt.strip():
            raise PreferenceImportError(
                f"{name}, row {number}: expected a non-empty text `prompt`, got {prompt!r}"
            )
        rows.append((number, prompt, row))
    if not rows:
        raise PreferenceImportError(f"{name}: no prompts")
    return rows


def load_prompt_file(path: str | os.PathLike) -> list[str]:
    """Prompts from a JSONL/Parquet file (see `prompt_rows`)."""
    return [prompt for _, prompt, _ in prompt_rows(path)]


def _preference_store(path: str | os.PathLike) -> Any:
    from rlhf_lab.store import PreferenceStore

    store = PreferenceStore(":memory:")  # the lab's importer: every row checked, errors name the row
    store.import_file(path)
    return store


def load_user_data(config: dict[str, Any]) -> dict[str, Any]:
    """The data files named in the config, read and checked before any model is built.

    Keys: demos, prompts, preferences (a store), objective_pairs ({objective name, None for
    `reward: rm`: what its reward model fits on}) and routes ({prompt: objective} under `rl.route`).
    """
    from rlhf_lab.bundled import load_prompts
    from rlhf_lab.demonstrations import load_demos
    from rlhf_lab.store.io import read_rows

    task = config.get("task")
    data: dict[str, Any] = {}
    if config.get("demonstrations"):
        path = Path(config["demonstrations"])
        data["demos"] = load_demos(
            [row for _, row in read_rows(path)] if path.suffix.lower() == ".parquet" else path
        )
    rows = prompt_rows(config["prompts"]) if config.get("prompts") else None
    if rows is not None:
        data["prompts"] = [prompt for _, prompt, _ in rows]
    stores: dict[str, Any] = {}
    if config.get("preferences"):
        data["preferences"] = stores[""] = _preference_store(config["preferences"])
    objectives = reward_objectives(config)
    for objective in objectives:
        if objective.preferences and str(objective.preferences) not in stores:
            stores[str(objective.preferences)] = _preference_store(objective.preferences)
    if objectives:
        data["objective_pairs"] = {o.name: objective_pairs(o, stores, task) for o in objectives}
    route = (config.get("rl") or {}).get("route")
    if route:
        source = Path(config["prompts"]).name if rows is not None else f"the {task} task's training prompts"
        if rows is None:
            rows = [(n, row["prompt"], row) for n, row in enumerate(load_prompts(task, "train"), 1)]
        data["routes"] = prompt_routes(rows, route, [str(o.name) for o in objectives], source)
    return data
