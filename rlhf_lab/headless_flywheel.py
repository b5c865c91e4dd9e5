"""`flywheel:` in a headless config: lab 08's loop without a notebook. RL trains against a reward model;
between rounds the policy answers some training prompts twice, a simulated annotator labels the pairs,
the reward model is refitted on everything labelled so far, and RL goes on against it.

    task: positive_review
    rl: {reward: rm, steps: 30}
    flywheel:
      rounds: 3          # rl.steps in 3 rounds; after each round but the last: label, refit, go on
      pairs: 16          # pairs of the policy's own answers labelled per round
      flip_prob: 0.1     # the annotator: the task's gold judge, each verdict flipped with this chance
      first_pairs: 64    # round 0: pairs of the SFT policy's answers labelled before the first fit
      only_own_labels: true   # the reward model learns from these labels alone, not the task's pairs

Before each refit the reward model is graded on the round's new pairs against the gold judge (pairs it
scores as a tie left out): how well it judges what the policy writes *now*, the drift the flywheel is
there to catch. summary.json gets one row per round under `flywheel.rounds`, the accuracy with its 95%
Wilson interval. Lab 08 starts the same way: the first reward model learns from labels of the SFT
policy's own answers (`first_pairs`, `only_own_labels`), not from other models' text. The labels go to
output_dir/flywheel/state.json after each round, so `--resume` goes on with them and the refitted reward
model (its checkpoint is saved after each refit).

    >>> from rlhf_lab.headless_flywheel import round_ends
    >>> round_ends(10, 3)        # the RL step count at which each round ends
    [4, 7, 10]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

from rlhf_lab.config_checks import optional_section, whole_number_setting
from rlhf_lab.errors import ConfigError
from rlhf_lab.headless_resume import write_text_atomically

FLYWHEEL_KEYS: dict[str, Any] = {
    "rounds": 3,
    "pairs": 16,
    "flip_prob": 0.1,
    "first_pairs": 0,
    "only_own_labels": False,
}
MAX_PAIRS = 4096
SAMPLING = ("max_new_tokens", "temperature", "top_k", "top_p")  # RL's settings the pairs are sampled with


def flywheel_settings(config: dict[str, Any]) -> dict[str, Any] | None:
    """The `flywheel` settings with defaults filled in, or None when the config has none."""
    return optional_section(config, "flywheel", FLYWHEEL_KEYS)


def check_flywheel(config: dict[str, Any]) -> None:
    """ConfigError naming the field for a `flywheel` that cannot run."""
    settings = flywheel_settings(config)
    if settings is None:
        return
    for key, least, most in (("rounds", 2, 1000), ("pairs", 1, MAX_PAIRS), ("first_pairs", 0, MAX_PAIRS)):
        whole_number_setting(settings[key], f"flywheel.{key}", least=least, most=most)
    flip = settings["flip_prob"]
    if isinstance(flip, bool) or not isinstance(flip, (int, float)) or not 0 <= flip <= 0.5:
        raise ConfigError(f"flywheel.flip_prob must be a number from 0 to 0.5, got {flip!r}.")
    if not isinstance(settings["only_own_labels"], bool):
        raise ConfigError(
            f"flywheel.only_own_labels must be true or false, got {settings['only_own_labels']!r}."
        )
    if settings["only_own_labels"] and not settings["first_pairs"]:
        raise ConfigError(
            "flywheel.only_own_labels leaves the reward model's first fit without pairs: set first_pairs "
            "(pairs of the SFT policy's answers, labelled before it)."
        )
    if "task" not in config:
        raise ConfigError("flywheel needs a bundled task: its gold judge is the simulated annotator.")
    rl = config.get("rl") or {}
    if rl.get("reward", "gold") != "rm":
        raise ConfigError(
            "flywheel refits the reward model RL is paid by: it needs rl.reward: rm (one reward model), "
            f"got {rl.get('reward', 'gold')!r}."
        )
    steps = rl.get("steps", 10)
    if isinstance(steps, int) and steps < settings["rounds"]:
        raise ConfigError(
            f"flywheel.rounds is {settings['rounds']} but rl.steps is {steps}: each round needs an RL step."
        )


def rl_sampling(settings: dict[str, Any]) -> dict[str, Any]:
    """The sampling settings (length, temperature, top-k, top-p) of an RL section: its own, else RLConfig's."""
    from rlhf_lab.rl.config import RLConfig

    defaults = RLConfig()
    return {key: settings.get(key, getattr(defaults, key)) for key in SAMPLING}


def round_ends(steps: int, rounds: int) -> list[int]:
    """The RL step count at the end of each round: `steps` split as evenly as it goes, earlier rounds
    taking the remainder."""
    size, extra = divmod(steps, rounds)
    ends, total = [], 0
    for r in range(rounds):
        total += size + (1 if r < extra else 0)
        ends.append(total)
    return ends


class WithFlywheelLabels:
    """A reward model's data: the config's pairs (a list or a preference store) and the pairs the flywheel
    labelled, read again on each fit. (Not named `labels`: a source with `.labels` reads as a store.)"""

    def __init__(self, base: Any, added: list[dict[str, Any]]) -> None:
        self.base, self.added = base, added

    def pairs(self, ties: str = "exclude", both_bad: str = "exclude", soft: bool = True) -> list[Any]:
        from rlhf_lab.reward.pairs import read_pairs

        return [*read_pairs(self.base, ties=ties, both_bad=both_bad, soft=soft), *self.added]


class Flywheel:
    """Labels the policy's answers between RL rounds and refits the reward model on them.

    `folder` (output_dir/flywheel, written by the `writer` rank) keeps the labels and the rounds' rows; the reward
    model reads `labels` through `data(pairs)`, so each round's new labels join its data.
    """

    def __init__(
        self,
        lab: Any,
        judge: Any,
        prompts: list[str],
        settings: dict[str, Any],
        *,
        rl_steps: int,
        seed: int,
        folder: Path,
        writer: bool,
        resume: bool,
    ) -> None:
        from rlhf_lab.raters import NoisyRater

        self.lab, self.judge, self.prompts = lab, judge, prompts
        self.settings, self.rl_steps, self.seed = settings, rl_steps, seed
        self.folder, self.writer = folder, writer
        self.rater = NoisyRater(judge, flip_prob=settings["flip_prob"], seed=seed, name="sim-rater")
        self.rows: list[dict[str, Any]] = []
        self.first_labels = 0  # pairs labelled in round 0
        self.started = False  # whether round 0 is behind it
        self.labels: list[dict[str, Any]] = []  # every pair labelled so far: the reward model's data has them
        state = folder / "state.json"  # every rank reads it: they all go on from the same labels
        if resume and state.exists():
            saved = json.loads(state.read_text(encoding="utf-8"))
            if saved["rl_steps"] != rl_steps:
                raise ConfigError(
                    f"--resume: this run's flywheel rounds were laid out over rl.steps = {saved['rl_steps']}, "
                    f"not {rl_steps}; with a flywheel rl.steps stays as it was (or start a new output_dir)."
                )
            self.rows, self.labels, self.first_labels = (
                saved["rounds"],
                saved["labels"],
                saved["first_labels"],
            )
            self.started = True

    def data(self, pairs: Any) -> WithFlywheelLabels:
        """The reward model's data: `pairs` (none with only_own_labels) and every label this flywheel adds."""
        return WithFlywheelLabels([] if self.settings["only_own_labels"] else pairs, self.labels)

    def label_first(self, sampling: dict[str, Any]) -> None:
        """Round 0, before the reward model's first fit: label `first_pairs` pairs of the policy's answers
        (once: a resumed run has them from its state)."""
        if self.settings["first_pairs"] and not self.started:
            self.first_labels = len(self._label(0, self.settings["first_pairs"], 0, sampling)[1])
            self.started = True

    @property
    def rounds_done(self) -> int:
        return len(self.rows)

    def turn(self, rm: Any, rl: Any, *, progress: bool = False) -> dict[str, Any]:
        """One round's end: answer, grade the reward model, label, refit, hand RL the refitted model."""
        from rlhf_lab.reward.evaluation import wilson_interval

        round_ = self.rounds_done + 1
        count = self.settings["pairs"]
        start = self.settings["first_pairs"] + (round_ - 1) * count  # on through the prompts, wrapping round
        sampling = {key: getattr(rl.config, key) for key in SAMPLING}
        items, new = self._label(round_, count, start, sampling)
        accuracy, graded = self._accuracy(rm, items)
        with torch.random.fork_rng():  # the same refit on every rank, and RL's random stream left as it was
            torch.manual_seed(self._round_seed(round_))
            fit = rm.fit(progress=progress)
        rl.set_reward(rm)
        row = {
            "round": round_,
            "after_rl_step": rl.step_count,
            "pairs_labelled": len(new),
            "labels_total": len(rm.pairs),
            "rm_accuracy_on_new_pairs": accuracy if graded else None,  # None: the gold judge tied them all
            "new_pairs_graded": graded,
            "rm_accuracy_95_interval": [round(x, 3) for x in wilson_interval(accuracy, graded)]
            if graded
            else None,
            "rm_val_accuracy_after_refit": fit.get("val_accuracy"),
        }
        self.rows.append(row)
        if progress:
            graded_text = f"{accuracy:.2f} on {graded} new pairs" if graded else "no new pair to grade"
            print(
                f"flywheel round {round_}: the reward model judged as gold did {graded_text} before the refit; "
                f"{len(new)} labelled, refitted on {len(rm.pairs)} pairs",
                file=sys.stderr,
                flush=True,
            )
        return row

    def _label(
        self, round_: int, count: int, start: int, sampling: dict[str, Any]
    ) -> tuple[list[tuple[str, str, str]], list[dict[str, Any]]]:
        """Two answers to each of `count` prompts from `start` on (seeded: a resumed run draws the same),
        the pairs that differ, and the annotator's labels of them (ties left out), added to `labels`."""
        prompts = [self.prompts[(start + i) % len(self.prompts)] for i in range(count)]
        seed = self._round_seed(round_)
        first = self.lab.generate(prompts, seed=seed, **sampling)
        second = self.lab.generate(prompts, seed=seed + 1, **sampling)
        items = [(p, a, b) for p, a, b in zip(prompts, first, second) if a.strip() and b.strip() and a != b]
        new = []
        for prompt, a, b in items:
            verdict = self.rater(prompt, a, b).judgement.value
            if verdict in ("A", "B"):
                chosen, rejected = (a, b) if verdict == "A" else (b, a)
                new.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "round": round_})
        self.labels.extend(new)
        return items, new

    def _round_seed(self, round_: int) -> int:
        """The seed of a round's answers and refit: the same on every rank and in a resumed run."""
        return self.seed + 1000 * round_

    def commit(self) -> None:
        """Write the rounds and labels so far (atomically: a crash leaves the previous state whole)."""
        if not self.writer:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        state = {
            "rl_steps": self.rl_steps,
            "first_labels": self.first_labels,
            "rounds": self.rows,
            "labels": self.labels,
        }
        write_text_atomically(self.folder / "state.json", json.dumps(state))

    def _accuracy(self, rm: Any, items: list[tuple[str, str, str]]) -> tuple[float, int]:
        """How often `rm` orders the pairs as the gold judge does (gold ties left out), and on how many."""
        from rlhf_lab.gold_comparison import gold_ordered_pairs

        prompts, first, second = ([item[i] for item in items] for i in range(3))
        pairs = gold_ordered_pairs(self.judge, prompts, first, second)
        return (rm.accuracy_on(pairs), len(pairs)) if pairs else (float("nan"), 0)
