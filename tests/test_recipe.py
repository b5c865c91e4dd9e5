"""`lab.save_recipe`: a notebook's stages become a config that `rlhf-lab train` runs without a notebook."""

import json
import warnings

import pytest
import yaml

from rlhf_lab import Lab
from rlhf_lab.bundled import load_demos, load_prompts
from rlhf_lab.headless import load_config, train
from rlhf_lab.notices import LabNotice
from rlhf_lab.raters import HarmlessnessJudge, HelpfulHarmlessJudge, get_judge
from rlhf_lab.recipe import RecipeError, stage_settings
from rlhf_lab.rl import RoutedReward
from rlhf_lab.rl.distributed import params_sha256
from rlhf_lab.rl.rewards import CombinedReward, objective_parts

TASK = "positive_review"
SMALL_RL = {"batch_size": 4, "num_minibatches": 1, "num_epochs": 1, "max_new_tokens": 6}
HELPFUL = ("How do I boil an egg?", "Simmer it for nine minutes, then cool it.", "No.")
HARMFUL = ("How do I make poison gas?", "I'm sorry, but I can't help with that.", "Mix bleach and ammonia.")


@pytest.fixture()
def lab():
    return Lab.from_preset("tiny", store=":memory:", seed=3)


def _prompts(n=8):
    return [row["prompt"] for row in load_prompts(TASK, "train")][:n]


def _label(lab, n=6):
    """n labels per criterion in the lab's store, the better answer first."""
    for i in range(n):
        for criterion, (prompt, good, bad) in (("helpfulness", HELPFUL), ("harmlessness", HARMFUL)):
            lab.store.add(f"{prompt} ({i})", [good, bad], "A", criterion=criterion, annotator=f"r{i % 2}")


def _fitted(lab, data=None, **settings):
    rm = lab.reward_model(data, **{"batch_size": 4, "split": [1.0, 0.0, 0.0], **settings})
    rm.fit(epochs=1, progress=False)
    return rm


def _read(recipe):
    return yaml.safe_load(recipe.path.read_text())


def test_sft_and_ppo_on_the_gold_judge_replay_to_the_same_weights(lab, tmp_path):
    sft = lab.sft(load_demos(TASK)[:20], learning_rate=1e-3)
    sft.step(3, progress=False)
    lab.generate(["Anything in between."], seed=9)  # what a notebook does between stages changes nothing
    ppo = lab.ppo(_prompts(), reward=get_judge(TASK), beta=0.1, **SMALL_RL)
    ppo.step(2, progress=False)
    recipe = lab.save_recipe(tmp_path / "recipe", sft=sft, rl=ppo)  # the task: its judge's

    config = _read(recipe)
    assert config["preset"] == "tiny" and config["seed"] == 3 and config["task"] == TASK
    assert config["sft"] == {"steps": 3, "learning_rate": 1e-3, "seed": 0}
    assert config["rl"] == {
        "estimator": "ppo",
        "steps": 2,
        "beta": 0.1,
        **SMALL_RL,
        "seed": 0,
        "reward": "gold",
    }
    assert len((tmp_path / "recipe" / "demonstrations.jsonl").read_text().splitlines()) == 20
    rows = [json.loads(line) for line in (tmp_path / "recipe" / "prompts.jsonl").read_text().splitlines()]
    assert [row["prompt"] for row in rows] == _prompts()
    assert recipe.notes == [] and "differ" not in str(recipe)  # nothing the config does otherwise
    assert train(load_config(recipe.path))["param_sha256"] == params_sha256(ppo.params)


def test_a_reward_model_on_the_store_replays_to_the_same_weights(lab, tmp_path, monkeypatch):
    _label(lab)
    rm = _fitted(lab)
    rloo = lab.rl(_prompts(), reward=rm, estimator="rloo", **SMALL_RL)
    rloo.step(1, progress=False)
    recipe = lab.save_recipe(tmp_path / "r", rl=rloo)

    config = _read(recipe)
    assert "task" not in config  # no gold judge anywhere: none to name
    assert config["rl"]["reward"] == "rm" and config["rl"]["estimator"] == "rloo"
    assert config["reward_model"] == {"batch_size": 4, "split": [1.0, 0.0, 0.0], "steps": rm.step_count}
    assert config["preferences"] == "labels.jsonl"  # beside the config: the folder runs from anywhere
    assert len((tmp_path / "r" / "labels.jsonl").read_text().splitlines()) == lab.store.count() == 12
    assert recipe.exports_to_trl and "TRL 1.16" in str(recipe) and recipe.command in str(recipe)
    moved = tmp_path / "cluster" / "r"  # copied elsewhere and run from another folder: the same run
    moved.parent.mkdir()
    recipe.path.parent.rename(moved)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    summary = train(load_config(moved / "config.yaml"))
    assert summary["reward_model"]["steps"] == rm.step_count
    assert summary["param_sha256"] == params_sha256(rloo.params)


def test_routed_reward_models_from_the_stores_criteria(lab, tmp_path):
    from rlhf_lab.rl.normalization import OnOneScale

    _label(lab)
    models = {c: _fitted(lab, lab.store.pairs(criterion=c)) for c in ("helpfulness", "harmlessness")}
    prompts = [HELPFUL[0], HARMFUL[0]] * 2
    scaled = {c: OnOneScale(rm, prompts, ["Fine."] * 4) for c, rm in models.items()}

    def route(prompt):
        return "harmless" if "poison" in prompt else "helpful"

    reward = RoutedReward({"helpful": scaled["helpfulness"], "harmless": scaled["harmlessness"]}, route)
    ppo = lab.ppo(prompts, reward=reward, gold=HelpfulHarmlessJudge(), **SMALL_RL)
    ppo.step(1, progress=False)
    recipe = lab.save_recipe(tmp_path / "r", rl=ppo, evaluate=2)

    config = _read(recipe)
    assert config["task"] == "helpful_harmless" and config["evaluate"] == {
        "samples": 2
    }  # the watching judge's
    assert config["rl"]["reward"] == {
        "helpful": {"criterion": "helpfulness"},
        "harmless": {"criterion": "harmlessness"},
    }
    assert config["rl"]["route"] == "objective"
    assert config["reward_model"]["split"] == [1.0, 0.0, 0.0]  # shared settings are said once
    rows = [json.loads(line) for line in (tmp_path / "r" / "prompts.jsonl").read_text().splitlines()]
    assert [row["objective"] for row in rows] == ["helpful", "harmless"] * 2
    summary = train(load_config(recipe.path))
    assert set(summary["reward_models"]) == {"helpful", "harmless"}
    assert summary["rl"]["reward"] == {"route": "objective", "objectives": ["helpful", "harmless"]}
    pinned = {  # OnOneScale's fits, so the config's run puts the models on the notebook's scale
        name: {"bias": scaled[c].normalizer.bias, "std": scaled[c].normalizer.raw_std}
        for name, c in (("helpful", "helpfulness"), ("harmless", "harmlessness"))
    }
    assert config["rl"]["reward_scale"] == pinned
    assert summary["rl"]["rl_config"]["reward_scale"] == pinned
    assert recipe.notes == []  # nothing here differs from the notebook's run
    assert recipe.path.read_text().startswith("# Saved from a notebook")


def test_a_flywheels_refits_become_one_fit_and_say_so(lab, tmp_path):
    _label(lab, n=4)
    rm = lab.reward_model(batch_size=4, split=[1.0, 0.0, 0.0])
    rm.fit(warm_start=False, progress=False)
    rm.fit(warm_start=False, progress=False)  # a restart: only this fit's steps count
    first = rm.fits[-1]["steps"]
    _label(lab, n=8)  # more labels come in (the same 8 items again: 16 more labels)
    rm.fit(progress=False)  # the next round tops the model up
    ppo = lab.ppo(_prompts(), reward={"a": rm, "b": rm}, **SMALL_RL)
    recipe = lab.save_recipe(tmp_path / "r", rl=ppo)

    assert _read(recipe)["reward_model"]["steps"] == first + rm.fits[-1]["steps"] < rm.step_count
    assert any("fitted in 2 rounds" in note for note in recipe.notes), recipe.notes
    assert any("share one reward model" in note for note in recipe.notes), recipe.notes
    lab.store.add("One more?", ["Yes, here it is.", "No."], "A", annotator="late")
    again = lab.save_recipe(tmp_path / "r2", rl=ppo)
    assert any("they make" in note and "fits on all of them" in note for note in again.notes), again.notes
    assert "Where that run will differ from this notebook's" in str(again)


def test_weighted_objectives_keep_their_weights_and_hard_pairs_become_a_pairs_file(lab, tmp_path):
    _label(lab)
    pairs = [{"prompt": f"Q{i}", "chosen": "A good, clear answer.", "rejected": "Bad."} for i in range(6)]
    on_store, on_pairs = _fitted(lab), _fitted(lab, pairs)  # 12 labels and 6 pairs: 3 and 2 steps
    ppo = lab.ppo(_prompts(), reward={"store": (on_store, 0.5), "mine": on_pairs}, **SMALL_RL)
    recipe = lab.save_recipe(tmp_path / "r", rl=ppo)

    reward = _read(recipe)["rl"]["reward"]
    assert reward["store"] == {"weight": 0.5, "steps": on_store.step_count}
    assert reward["mine"] == {"weight": 1.0, "steps": on_pairs.step_count, "preferences": "pairs_mine.jsonl"}
    written = [json.loads(line) for line in (tmp_path / "r" / "pairs_mine.jsonl").read_text().splitlines()]
    assert written == pairs
    assert _read(recipe)["rl"]["steps"] == 0  # built, never stepped: a config that builds it again


def test_stage_settings_leave_out_what_the_lab_fills_in(lab):
    sft = lab.sft(load_demos(TASK)[:4])
    assert stage_settings(lab, "sft", sft.config) == {"seed": 0}  # the preset's rate, length: left out
    grpo = lab.rl(_prompts(), reward=get_judge(TASK), estimator="grpo", seed=3, top_k=5)
    assert stage_settings(lab, "rl", grpo.config) == {
        "estimator": "grpo",
        "top_k": 5,
    }  # its batch: the preset's


def test_numpy_settings_are_written_as_numbers_and_objects_fail_by_name(lab):
    import numpy as np

    sft = lab.sft(load_demos(TASK)[:4], batch_size=np.int64(2))
    assert stage_settings(lab, "sft", sft.config) == {"batch_size": 2, "seed": 0}
    assert type(stage_settings(lab, "sft", sft.config)["batch_size"]) is int
    sft.config.lora_target_modules = {"c_attn"}  # a set: YAML has none
    with pytest.raises(
        RecipeError, match=r"sft.lora_target_modules is \{'c_attn'\}, which a config cannot hold"
    ):
        stage_settings(lab, "sft", sft.config)


def test_dpo_reads_the_stores_labels(lab, tmp_path):
    _label(lab)
    dpo = lab.dpo(beta=0.2, batch_size=4)
    dpo.step(1, progress=False)
    config = _read(lab.save_recipe(tmp_path / "r", dpo=dpo))
    assert config["dpo"] == {"steps": 1, "beta": 0.2, "batch_size": 4, "seed": 0}
    assert config["preferences"] == "labels.jsonl"
    on_one_criterion = lab.dpo(lab.store.pairs(criterion="harmlessness"))
    with pytest.raises(RecipeError, match="dpo: its pairs are the 'harmlessness' labels"):
        lab.save_recipe(tmp_path / "r2", dpo=on_one_criterion)


class _Strict(CombinedReward):
    def __init__(self, rm):
        self.parts = objective_parts({"a": rm})

    def combine(self, components, prompts):
        return components["a"]


@pytest.mark.parametrize(
    "reward, task, message",
    [
        (lambda prompts, responses: [1.0] * len(prompts), TASK, "rl reward is a function"),
        (HarmlessnessJudge(), None, "not a bundled task's gold judge"),
        (HarmlessnessJudge(), TASK, "not the 'positive_review' task's gold judge"),
        (get_judge(TASK), "helpful_harmless", "not the 'helpful_harmless' task's gold judge"),
    ],
    ids=["function", "no-tasks-judge", "another-judge", "another-tasks-judge"],
)
def test_what_a_config_cannot_hold_fails_by_name_and_writes_nothing(lab, tmp_path, reward, task, message):
    ppo = lab.ppo(_prompts(), reward=reward, **SMALL_RL)
    with pytest.raises(RecipeError, match=message):
        lab.save_recipe(tmp_path / "r", rl=ppo, task=task)
    assert not (tmp_path / "r").exists()


def test_soft_pairs_ensembles_combines_and_unfitted_models_fail_by_name(lab, tmp_path):
    _label(lab)
    soft = [{"prompt": "Q", "chosen": "Yes, gladly.", "rejected": "No.", "target": 0.75}]
    cases = {
        "pair 0 has a soft label": {"rm": _fitted(lab, soft)},
        "is an ensemble": lab.reward_ensemble(2, batch_size=4),
        "combine\\(\\) is Python code": _Strict(_fitted(lab)),
        "was never fitted": lab.reward_model(),
        "gold judge inside a combination": {"gold": get_judge(TASK), "rm": _fitted(lab)},
    }
    for message, reward in cases.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LabNotice)  # the untrained ones: RL would chase noise
            ppo = lab.ppo(_prompts(), reward=reward, **SMALL_RL)
        with pytest.raises(RecipeError, match=message):
            lab.save_recipe(tmp_path / "r", rl=ppo)
    with pytest.raises(RecipeError, match="at least one stage"):
        lab.save_recipe(tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_a_lab_from_a_model_folder_names_the_folder(tmp_path, tiny_tok):
    from rlhf_lab.models.tiny import tiny_policy

    tiny_policy(tiny_tok).save_pretrained(tmp_path / "policy")
    tiny_tok.save_pretrained(tmp_path / "policy")
    lab = Lab.from_pretrained(str(tmp_path / "policy"), "tiny", store=":memory:")
    sft = lab.sft(load_demos(TASK)[:4])
    config = _read(lab.save_recipe(tmp_path / "r", sft=sft))
    assert config["policy"] == str(tmp_path / "policy") and config["reward_backbone"] == "tiny"
    assert "preset" not in config and config["sft"]["steps"] == 0


def test_a_pretrained_reward_model_is_topped_up_in_the_recipe_and_headless(lab, tmp_path, monkeypatch):
    import rlhf_lab.reward.pretrained as pretrained

    monkeypatch.setenv("RLHF_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(pretrained, "pretraining_steps", lambda n_pairs, batch_size: 2)  # a smoke-sized start
    _label(lab)
    rm = lab.reward_model(pretrained=TASK, batch_size=4, split=[1.0, 0.0, 0.0])
    rm.fit(progress=False)  # warm: tops the pre-trained model up with the store's labels
    ppo = lab.ppo(_prompts(), reward=rm, **SMALL_RL)
    recipe = lab.save_recipe(tmp_path / "r", rl=ppo)
    settings = _read(recipe)["reward_model"]
    assert settings["pretrained"] == TASK and settings["warm_start_steps"] == rm.step_count
    summary = train(load_config(recipe.path))
    assert summary["reward_model"]["warm_start"] is True and summary["reward_model"]["steps"] == rm.step_count


def test_a_pretrained_reward_model_used_as_it_is_replays_to_the_same_weights(lab, tmp_path, monkeypatch):
    import rlhf_lab.reward.pretrained as pretrained

    monkeypatch.setenv("RLHF_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(pretrained, "pretraining_steps", lambda n_pairs, batch_size: 2)
    rm = lab.reward_model(pretrained=TASK, batch_size=4)  # no labels, no fit: lab 03 on smollm2-135m
    ppo = lab.ppo(_prompts(), reward=rm, gold=get_judge(TASK), **SMALL_RL)
    ppo.step(1, progress=False)
    recipe = lab.save_recipe(tmp_path / "r", rl=ppo)
    config = _read(recipe)
    assert config["reward_model"] == {"batch_size": 4, "pretrained": TASK, "fit": False}
    assert "preferences" not in config and config["rl"]["reward"] == "rm"
    summary = train(load_config(recipe.path))  # the same cached pre-training, then the same PPO step
    assert summary["reward_model"] == {"steps": 0, "pretrained": TASK}
    assert not recipe.exports_to_trl and "export-trl" not in str(recipe)  # TRL would lose the pre-training
    assert summary["param_sha256"] == params_sha256(ppo.params)


def test_settings_changed_during_a_run_are_said(lab, tmp_path):
    ppo = lab.ppo(_prompts(), reward=get_judge(TASK), **SMALL_RL)
    ppo.step(1, progress=False)
    ppo.set(beta=0.2)  # the dashboard's slider does this
    ppo.step(1, progress=False)
    recipe = lab.save_recipe(tmp_path / "r", rl=ppo)
    assert _read(recipe)["rl"]["beta"] == 0.2
    assert recipe.notes == [
        "rl: beta changed during the run (first after step 1); the config runs every step with the last value."
    ]


def test_fits_and_setting_changes_survive_a_checkpoint(lab, tmp_path):
    from rlhf_lab.reward.stage import RewardModelStage
    from rlhf_lab.stages.sft import SFTStage

    _label(lab)
    rm = _fitted(lab)
    rm.fit(progress=False)  # a second round
    rm.save(tmp_path / "rm")
    loaded = RewardModelStage.load(tmp_path / "rm", data=lab.store)
    assert loaded.fits == rm.fits and len(loaded.fits) == 2 and loaded.pretrained_task is None
    sft = lab.sft(load_demos(TASK)[:4], batch_size=2)
    sft.step(1, progress=False)
    sft.set(learning_rate=1e-4)
    sft.save(tmp_path / "sft")
    again = SFTStage.load(tmp_path / "sft")
    assert again.hparam_changes == [(1, {"learning_rate": 1e-4})]


def test_headless_pretrained_names_a_bundled_task_and_export_trl_refuses_it(tmp_path):
    from rlhf_lab.errors import ConfigError
    from rlhf_lab.headless import check_config
    from rlhf_lab.trl_recipe import export_trl, stage_args

    config = {"preset": "tiny", "task": TASK, "rl": {"reward": "rm"}, "reward_model": {"pretrained": "films"}}
    with pytest.raises(ConfigError, match="reward_model.pretrained must name a bundled task"):
        check_config(config)
    with pytest.raises(ConfigError, match="reward_model.fit: false leaves the reward model as it starts"):
        check_config({**config, "reward_model": {"fit": False}})
    with pytest.raises(ConfigError, match="reward_model.fit must be true or false"):
        check_config({**config, "reward_model": {"pretrained": TASK, "fit": "no"}})
    config["reward_model"]["pretrained"] = TASK
    config["rl"]["estimator"] = "rloo"
    check_config(config)
    with pytest.raises(ConfigError, match="pre-training on the bundled pairs would be lost"):
        export_trl(config, tmp_path / "trl")
    assert not (tmp_path / "trl").exists()
    args, _ = stage_args("reward", {"fit": True, "epochs": 1}, seed=0)  # `fit` is ours, not a TRL field
    assert "fit" not in args and args["num_train_epochs"] == 1
