"""Every importer, fuzzed: any input gives a result or a clear validation error, never a crash,
and a failed import writes nothing."""

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlhf_lab.demonstrations import DemoError, load_demos
from rlhf_lab.rl.config import RLConfig
from rlhf_lab.store import PreferenceImportError, PreferenceStore

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

text = st.one_of(st.text(max_size=40), st.just(""), st.just("   "), st.just("<script>alert(1)</script>"))
scalar = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True), text)
value = st.recursive(
    scalar, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=3), max_leaves=8
)
keys = st.sampled_from(
    [
        "prompt",
        "chosen",
        "rejected",
        "responses",
        "judgement",
        "ranking",
        "likert",
        "annotator",
        "source",
        "note",
        "criterion",
        "created",
        "messages",
        "response",
        "x",
    ]
)
row = st.dictionaries(keys, value, max_size=8)
plausible_row = st.fixed_dictionaries(
    {"prompt": text, "chosen": text, "rejected": text},
    optional={"annotator": text, "judgement": st.sampled_from(["A", "B", "tie", "both_bad", "C", 3])},
)


def _seeded_store(tmp_path):
    store = PreferenceStore(tmp_path / "labels.sqlite")
    if store.count() == 0:
        store.add("Seed prompt", ["one", "two"], "A", annotator="seed")
    return store


@FUZZ
@given(rows=st.lists(st.one_of(row, plausible_row), min_size=1, max_size=6))
def test_preference_jsonl_import_is_all_or_nothing(tmp_path, rows):
    store = _seeded_store(tmp_path)
    before = store.count()
    path = tmp_path / "import.jsonl"
    path.write_text("\n".join(json.dumps(r, allow_nan=True) for r in rows), encoding="utf-8")
    try:
        ids = store.import_file(path)
    except PreferenceImportError as exc:
        assert str(exc)  # a message a person can read
        assert store.count() == before  # nothing half-imported
    else:
        assert store.count() == before + len(ids)


@FUZZ
@given(blob=st.binary(max_size=300))
def test_preference_import_of_arbitrary_bytes(tmp_path, blob):
    store = _seeded_store(tmp_path)
    before = store.count()
    for suffix in (".jsonl", ".parquet"):
        path = tmp_path / f"garbage{suffix}"
        path.write_bytes(blob)
        try:
            store.import_file(path)
        except PreferenceImportError:
            pass
        assert store.count() >= before
    assert store.count() == before or blob.strip()  # only real rows could ever be added


@FUZZ
@given(
    records=st.lists(st.one_of(row, st.fixed_dictionaries({"prompt": text, "response": text})), max_size=5)
)
def test_demonstrations_loader(records):
    try:
        demos = load_demos(records)
    except DemoError as exc:
        assert str(exc)
    else:
        assert demos and all(d.prompt.strip() and d.response.strip() for d in demos)


@FUZZ
@given(blob=st.binary(max_size=200))
def test_demonstrations_file_of_arbitrary_bytes(tmp_path, blob):
    path = tmp_path / "demos.jsonl"
    path.write_bytes(blob)
    try:
        load_demos(path)
    except DemoError as exc:
        assert str(exc)


@FUZZ
@given(prompts=st.one_of(text, st.lists(st.one_of(text, scalar), max_size=4)))
def test_prompt_lists(prompts):
    from rlhf_lab.rl.guards import check_prompts as _check_prompts

    try:
        checked = _check_prompts(prompts)
    except (TypeError, ValueError) as exc:
        assert str(exc)
    else:
        assert checked and all(isinstance(p, str) and p.strip() for p in checked)


config_field = st.sampled_from(
    [
        "batch_size",
        "temperature",
        "top_p",
        "top_k",
        "beta",
        "target_kl",
        "kl_estimator",
        "estimator",
        "num_epochs",
        "learning_rate",
        "samples_per_prompt",
        "num_minibatches",
        "max_new_tokens",
    ]
)


@FUZZ
@given(changes=st.dictionaries(config_field, scalar, max_size=4))
def test_rl_configs(changes):
    try:
        config = RLConfig(**changes).validate()
    except (TypeError, ValueError) as exc:
        assert str(exc)
    else:
        assert config.batch_size >= 1 and config.temperature > 0 and 0 < config.top_p <= 1
        assert not (isinstance(config.beta, float) and math.isnan(config.beta))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0])
def test_rl_config_rejects_non_finite_and_negative_beta(bad):
    with pytest.raises(ValueError):
        RLConfig(beta=bad).validate()
