"""Checkpoints you can trust: a manifest of sizes and sha256, the previous good copy kept, load verifies."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest

from rlhf_lab.errors import CheckpointError
from rlhf_lab.models.tiny import tiny_policy
from rlhf_lab.stages.checkpoint import MANIFEST, checkpoint_problem, previous_checkpoint
from rlhf_lab.stages.sft import SFTStage

DEMOS = [
    {"prompt": "What is two plus two?", "response": "Two plus two is four."},
    {"prompt": "Name a colour.", "response": "Blue is a colour."},
]


def _truncate(file):
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


def _empty(file):
    file.write_bytes(b"")


def _zeros_inside(file):
    data = bytearray(file.read_bytes())
    start = max(0, len(data) // 2 - 32)
    data[start : start + 64] = bytes(min(64, len(data)))
    file.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_tok):
    """A checkpoint saved at step 2, with the one saved at step 1 kept as the previous copy."""
    folder = tmp_path_factory.mktemp("ckpt")
    stage = SFTStage(tiny_policy(tiny_tok), tiny_tok, DEMOS, learning_rate=1e-3, batch_size=2, max_length=64)
    stage.step(1, progress=False)
    stage.save(folder / "sft")
    stage.step(1, progress=False)
    stage.save(folder / "sft")
    return folder


def _copy(saved, tmp_path):
    for name in ("sft", ".sft.old"):
        shutil.copytree(saved / name, tmp_path / name)
    return tmp_path / "sft"


def test_two_saves_keep_the_previous_checkpoint_and_a_manifest(saved):
    path = saved / "sft"
    assert previous_checkpoint(path).is_dir()
    assert checkpoint_problem(path) is None and checkpoint_problem(previous_checkpoint(path)) is None
    files = json.loads((path / MANIFEST).read_text())["files"]
    on_disk = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()} - {MANIFEST}
    assert set(files) == on_disk and "stage.json" in files and "rng.pt" in files
    assert all(len(entry["sha256"]) == 64 and entry["size"] >= 0 for entry in files.values())
    assert SFTStage.load(path).step_count == 2


def _files(saved):
    return sorted(json.loads((saved / "sft" / MANIFEST).read_text())["files"])


@pytest.mark.slow
def test_every_damaged_file_falls_back_to_the_previous_checkpoint(saved, tmp_path):
    for i, name in enumerate(_files(saved)):
        for damage in (_truncate, _empty, _zeros_inside):
            path = _copy(saved, tmp_path / f"{i}-{damage.__name__}")
            before = (path / name).read_bytes()
            damage(path / name)
            if (path / name).read_bytes() == before:
                continue  # e.g. an empty file cannot be emptied
            with pytest.warns(RuntimeWarning, match=f"damaged: .*{name}.*previous good checkpoint"):
                stage = SFTStage.load(path)
            assert stage.step_count == 1, (name, damage.__name__)


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("history.jsonl", _empty),
        ("rng.pt", _truncate),
        ("optim.pt", _empty),
        ("stage.json", _truncate),
        (MANIFEST, _truncate),
    ],
)
def test_a_torn_file_falls_back_naming_it(saved, tmp_path, name, damage):
    path = _copy(saved, tmp_path)
    damage(path / name)
    with pytest.warns(RuntimeWarning, match=f"{name}"):
        assert SFTStage.load(path).step_count == 1


def test_weights_with_zeros_and_an_empty_chat_template_are_caught(saved, tmp_path):
    names = _files(saved)
    weights = next(n for n in names if n.endswith(".safetensors"))
    path = _copy(saved, tmp_path / "w")
    _zeros_inside(path / weights)
    with pytest.warns(RuntimeWarning, match="does not match its sha256"):
        assert SFTStage.load(path).step_count == 1
    template = [n for n in names if n.endswith(".jinja")]
    if template:
        path = _copy(saved, tmp_path / "t")
        _empty(path / template[0])
        with pytest.warns(RuntimeWarning, match="truncated or overwritten"):
            assert SFTStage.load(path).step_count == 1


def test_without_a_good_previous_copy_one_clear_error_names_the_file(saved, tmp_path):
    path = _copy(saved, tmp_path)
    _truncate(path / "rng.pt")
    shutil.rmtree(previous_checkpoint(path))
    with pytest.raises(CheckpointError, match=r"rng\.pt has \d+ bytes; the manifest says \d+"):
        SFTStage.load(path)
    path = _copy(saved, tmp_path / "both")
    _empty(path / "history.jsonl")
    _empty(previous_checkpoint(path) / "history.jsonl")
    with pytest.raises(CheckpointError, match="history.jsonl"):
        SFTStage.load(path)


def test_missing_files_and_checkpoints(saved, tmp_path):
    with pytest.raises(FileNotFoundError, match="No complete stage checkpoint"):
        SFTStage.load(tmp_path / "nothing")
    path = _copy(saved, tmp_path / "m")
    (path / MANIFEST).unlink()  # a format-2 checkpoint must have its manifest
    with pytest.warns(RuntimeWarning, match="manifest.json is missing"):
        assert SFTStage.load(path).step_count == 1
    shutil.rmtree(path)  # a crash between the two renames of a save: the previous copy is used
    with pytest.warns(RuntimeWarning, match="does not exist"):
        assert SFTStage.load(path).step_count == 1


def test_a_checkpoint_from_before_manifests_still_loads(saved, tmp_path):
    path = _copy(saved, tmp_path)
    (path / MANIFEST).unlink()
    meta = json.loads((path / "stage.json").read_text())
    (path / "stage.json").write_text(json.dumps({**meta, "format": 1}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert SFTStage.load(path).step_count == 2
