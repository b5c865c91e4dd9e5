"""The `rl.reward` of a headless config: the gold judge, one reward model, or several combined.

Several reward models, one per objective, each fitted on its own labels (e.g. a notebook's store saved
with `lab.store.to_jsonl("labels.jsonl")`, whose label records keep their criterion)::

    preferences: labels.jsonl
    rl:
      reward:
        helpful: {criterion: helpfulness}              # weight 1: the labels asked "which helps more?"
        harmless: {criterion: harmlessness, weight: 0.5, epochs: 3}
      # route: kind    # instead of a weighted sum: each prompt's `kind` column names the one model that scores it

An entry takes `weight` (default 1; not with `route`), `criterion` (keep only labels with it),
`preferences` (its own file instead of the config's, or the bundled task's pairs) and any
`reward_model` setting, which overrides that section for this model alone. The RL stage puts each
reward model on one scale (mean 0, std 1 on its first step's samples) before weighting or routing,
as `lab.ppo(prompts, reward={...})` does in a notebook; `rl.reward_norm_samples` fits it on more fresh
answers, `rl.reward_scale` pins it ({name: {bias, std}}: what a recipe saved around `OnOneScale` writes).
With `route: COLUMN` the prompts (your `prompts` file, or the task's bundled ones: helpful_harmless has
`kind`: benign or harmful) need that column, and each value must name an objective: Llama 2's rule
(Touvron et al. 2023, section 3.2.3).
`rlhf-lab export-trl` carries both to TRL 1.16: one RewardTrainer per objective, then GRPO/RLOO with one
reward function per model, each rescaled on its first batch as here, weighted by `reward_weights` or
returning None on the prompts routed elsewhere.

    >>> from rlhf_lab.headless_rewards import reward_objectives
    >>> [o.name for o in reward_objectives(config)]
    ['helpful', 'harmless']
"""

from __future__ import annotations

import math
import numbers
import os
import re
from dataclasses import dataclass, field
from typing import Any

from rlhf_lab.errors import ConfigError

OBJECTIVE_KEYS = ("weight", "criterion", "preferences")  # every other key of an entry: a reward_model setting
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a folder name and a metric name (objective/scores/<name>)


@dataclass(frozen=True)
class RewardObjective:
    """One reward model that `rl.reward` asks for. `name` is None for `reward: rm` (the single model)."""

    name: str | None
    weight: float = 1.0
    criterion: str | None = None
    preferences: str | None = None  # its own file; None: the config's `preferences`, else the task's pairs
    settings: dict[str, Any] = field(default_factory=dict)  # the reward_model section, with its overrides

    @property
    def folder(self) -> str:
        """Where its checkpoint and export go, under output_dir and output_dir/export."""
        return "reward_model" if self.name is None else f"reward_model/{self.name}"

    @property
    def fits(self) -> bool:
        """False for `fit: false`: a pre-trained model used as it is, with no labels to fit on."""
        return self.settings.get("fit", True) is not False


def _entry_settings(entry: Any) -> dict[str, Any]:
    """One `rl.reward` entry as a mapping: `name: 0.5` is short for `name: {weight: 0.5}`, `name:` for `{}`."""
    return {"weight": entry} if isinstance(entry, numbers.Real) else dict(entry or {})


def reward_objectives(config: dict[str, Any]) -> list[RewardObjective]:
    """The reward models the config's `rl.reward` asks for: none for gold, one for rm, one per entry."""
    rl = config.get("rl") or {}
    reward = rl.get("reward", "gold")
    base = dict(config.get("reward_model") or {})
    if reward == "gold" or not rl:
        return []
    if reward == "rm":
        return [RewardObjective(None, settings=base)]
    objectives = []
    for name, entry in reward.items():
        entry = _entry_settings(entry)
        own = {key: entry.pop(key) for key in OBJECTIVE_KEYS if key in entry}
        objectives.append(RewardObjective(name, settings={**base, **entry}, **own))
    return objectives


def check_reward(config: dict[str, Any]) -> None:
    """ConfigError naming the field for an `rl.reward` (or `rl.route`) that cannot be used."""
    rl = config.get("rl") or {}
    reward, route = rl.get("reward", "gold"), rl.get("route")
    if isinstance(reward, dict):
        _check_entries(config, reward, route)
    elif reward not in ("gold", "rm"):
        raise ConfigError(
            f"rl.reward must be 'gold', 'rm' or a mapping of objective names to reward models "
            f"(see rlhf_lab.headless_rewards), got {reward!r}."
        )
    elif route is not None:
        raise ConfigError("rl.route routes between several reward models: give rl.reward as a mapping.")
    needs_pairs = [o for o in reward_objectives(config) if not o.preferences and o.fits]
    if needs_pairs and "task" not in config and not config.get("preferences"):
        what = "rl.reward: rm" if reward == "rm" else f"rl.reward.{needs_pairs[0].name}"
        raise ConfigError(f"{what} needs preferences: name a file, or a bundled task.")


def _check_entries(config: dict[str, Any], reward: dict[Any, Any], route: Any) -> None:
    if not reward:
        raise ConfigError("rl.reward: the mapping names no objective.")
    if route is not None and (not isinstance(route, str) or not route):
        raise ConfigError(f"rl.route must name a column of the prompts, got {route!r}.")
    for name, entry in reward.items():
        where = f"rl.reward.{name}"
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigError(f"rl.reward: objective name {name!r} must be 1-64 letters, digits, _ or -.")
        if (entry is not None and not isinstance(entry, (dict, numbers.Real))) or isinstance(entry, bool):
            raise ConfigError(f"{where} must be a mapping of settings (or a weight), got {entry!r}.")
        entry = _entry_settings(entry)
        weight = entry.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight):
            raise ConfigError(f"{where}.weight must be a finite number, got {weight!r}.")
        if route is not None and "weight" in entry:
            raise ConfigError(
                f"{where}.weight: with rl.route each prompt is scored by one model, unweighted."
            )
        criterion = entry.get("criterion")
        if criterion is not None and (not isinstance(criterion, str) or not criterion.strip()):
            raise ConfigError(f"{where}.criterion must be a label criterion (text), got {criterion!r}.")
        own_file = entry.get("preferences")
        if own_file is not None and not isinstance(own_file, (str, os.PathLike)):
            raise ConfigError(
                f"{where}.preferences must be a file path (.jsonl or .parquet), got {own_file!r}."
            )
        if criterion and not own_file and not config.get("preferences"):
            raise ConfigError(
                f"{where}.criterion needs label records in a preferences file (the bundled task's pairs "
                "carry no criterion): save them with lab.store.to_jsonl(path) and name the file."
            )


def objective_pairs(objective: RewardObjective, stores: dict[str, Any], task: str | None) -> Any:
    """What the objective's reward model is fitted on: a store, its pairs with one criterion, or the
    task's bundled pairs. `stores` maps each preferences file (and "" for the config's) to its store."""
    from rlhf_lab.bundled import preference_pairs

    if not objective.fits:
        return []  # `fit: false`: the pre-trained weights as they are, nothing to fit on
    key = str(objective.preferences or "")
    if key not in stores:
        return preference_pairs(task)
    store = stores[key]
    if objective.criterion is None:
        return store
    # Stored criteria are lower-cased when they are among the known ones (rlhf_lab.store.records).
    pairs = store.pairs(criterion=objective.criterion) or store.pairs(criterion=objective.criterion.lower())
    if not pairs:
        found = sorted({label.criterion for label in store.labels() if label.criterion})
        raise ConfigError(
            f"rl.reward.{objective.name}: no preference pairs with criterion {objective.criterion!r} in "
            f"{objective.preferences or 'preferences'}; its criteria: {', '.join(found) or 'none'}."
        )
    return pairs


def prompt_routes(
    rows: list[tuple[int, str, Any]], column: str, names: list[str], source: str
) -> dict[str, str]:
    """{prompt: objective} from (row number, prompt, row) triples, each row's `column` naming an objective."""
    routes: dict[str, str] = {}
    for number, prompt, row in rows:
        value = row.get(column) if isinstance(row, dict) else None
        if value not in names:
            raise ConfigError(
                f"rl.route: {source}, row {number}: column {column!r} is {value!r}; each prompt's {column!r} "
                f"must name one of the objectives ({', '.join(names)})."
            )
        if routes.setdefault(prompt, value) != value:
            raise ConfigError(
                f"rl.route: {source}, row {number}: the prompt {prompt[:80]!r} appears with two routes "
                f"({routes[prompt]!r} and {value!r})."
            )
    return routes


def combined_reward(
    models: dict[str | None, Any], config: dict[str, Any], routes: dict[str, str] | None
) -> Any:
    """The RL stage's `reward=`: the one reward model, or the objectives routed or weighted."""
    from rlhf_lab.rl.rewards import RoutedReward

    if None in models:
        return models[None]
    if routes:

        def route(prompt: str) -> str:
            return routes[prompt]  # every training prompt has one; the stage scores only those

        return RoutedReward(dict(models), route=route)
    return {o.name: (models[o.name], o.weight) for o in reward_objectives(config)}


def describe_reward(config: dict[str, Any]) -> Any:
    """What summary.json says the RL stage was paid by: gold, rm, or the objectives and how they combine."""
    rl = config.get("rl") or {}
    reward = rl.get("reward", "gold")
    if not isinstance(reward, dict):
        return reward
    names = {o.name: o.weight for o in reward_objectives(config)}
    return {"route": rl["route"], "objectives": list(names)} if rl.get("route") else {"weights": names}
