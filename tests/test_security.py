"""Loading is safe by construction: safetensors for weights, weights_only for the rest, no pickle,
and no remote code unless the user asks for it."""

import ast
import inspect
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rlhf_lab"
SOURCES = sorted(PACKAGE.rglob("*.py"))


def _calls(tree: ast.AST, dotted: str):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == dotted:
            yield node


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_unsafe_deserialisation(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in _calls(tree, "torch.load"):
        keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
        assert keywords.get("weights_only") == "True", (
            f"{path.name}:{node.lineno} torch.load without weights_only"
        )
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            assert not {"pickle", "cloudpickle", "dill", "joblib"} & set(names), f"{path.name}: pickle import"
        if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
            assert ast.unparse(node.value) != "True", (
                f"{path.name}:{node.value.lineno} trust_remote_code=True"
            )
        if isinstance(node, ast.keyword) and node.arg == "safe_serialization":
            assert ast.unparse(node.value) != "False", f"{path.name}: weights saved without safetensors"


def test_remote_code_is_off_unless_asked():
    from rlhf_lab.lab import Lab
    from rlhf_lab.models.presets import load_policy, load_reward_backbone

    for fn in (load_policy, load_reward_backbone, Lab.from_pretrained):
        assert inspect.signature(fn).parameters["trust_remote_code"].default is False


def test_checkpoints_hold_safetensors_not_pickled_weights(tmp_path, tiny_lab):
    sft = tiny_lab.sft([{"prompt": "Say hi.", "response": "Hi there!"}] * 4, batch_size=2)
    sft.step(1)
    sft.save(tmp_path / "ckpt")
    files = [p.name for p in (tmp_path / "ckpt").rglob("*") if p.is_file()]
    assert "model.safetensors" in files
    assert not [f for f in files if f.endswith((".bin", ".pkl", ".pickle"))]
