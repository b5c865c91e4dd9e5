"""The Python in the README, the labs' README, the workshop guide and the docstrings' `>>>` examples
speaks the current API: its imports resolve, and every call it makes on the lab, on the stages and the
labeller the lab returns, and on imported functions names a method that exists and keywords that method
takes. The snippets are a menu of lines, not a program (a run in the background and the next stage would
collide), so they are read, not run; the labs and their tests run the same calls.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
from dataclasses import fields
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "labs/README.md", "labs/WORKSHOP.md")


def python_blocks() -> list[str]:
    fence = re.compile(r"^[ \t]*```python\n(.*?)^[ \t]*```", flags=re.S | re.M)  # in a list item: indented
    return [
        textwrap.dedent(block)
        for doc in DOCS
        for block in fence.findall((ROOT / doc).read_text(encoding="utf-8"))
    ]


def docstring_examples() -> list[tuple[str, str]]:
    """(where, code) for each docstring in rlhf_lab with `>>>` examples: their lines as one block."""
    examples = []
    for path in sorted((ROOT / "rlhf_lab").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            doc = ast.get_docstring(node) or ""
            lines = [line.strip()[4:] for line in doc.splitlines() if line.strip()[:4] in (">>> ", "... ")]
            if lines:
                name = getattr(node, "name", "module")
                examples.append((f"{path.relative_to(ROOT)}:{name}", "\n".join(lines) + "\n"))
    return examples


def made_by_lab() -> dict[str, tuple[type, type | None]]:
    """What each factory method of `Lab` builds: the object's class and its config dataclass."""
    from rlhf_lab.reward.config import RMConfig
    from rlhf_lab.reward.stage import RewardModelStage
    from rlhf_lab.rl import RLStage
    from rlhf_lab.rl.config import RLConfig
    from rlhf_lab.stages.dpo import DPOConfig, DPOStage
    from rlhf_lab.stages.sft import SFTConfig, SFTStage
    from rlhf_lab.ui.labeller import PairLabeller
    from rlhf_lab.ui.playground import Playground

    return {
        "sft": (SFTStage, SFTConfig),
        "reward_model": (RewardModelStage, RMConfig),
        "ppo": (RLStage, RLConfig),
        "rl": (RLStage, RLConfig),
        "dpo": (DPOStage, DPOConfig),
        "label": (PairLabeller, None),
        "playground": (Playground, None),
    }


def parameters(function) -> tuple[set[str], bool]:
    """A callable's keyword names, and whether it takes **kwargs too."""
    signature = inspect.signature(function)
    names = {p.name for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD}
    return names, any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())


def accepted_keywords(function, builds: tuple[type, type | None] | None = None) -> set[str] | None:
    """The keywords `function` takes; for a lab factory with **config, also what its stage and config take.
    None: anything (a **kwargs that goes where this test cannot follow)."""
    names, open_ended = parameters(function)
    if not open_ended:
        return names
    if builds is None:
        return None
    cls, config = builds
    more, _ = parameters(cls.__init__)
    traits = set(cls.class_trait_names()) if hasattr(cls, "class_trait_names") else set()
    return names | more | traits | ({f.name for f in fields(config)} if config else set())


def api_problems(block: str) -> list[str]:
    """What in `block` does not match the API: a missing import, method or keyword, one line each."""
    from rlhf_lab import Lab

    tree = compile(block, "README.md", "exec", flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    nodes = list(ast.walk(tree))
    imported: dict[str, object] = {"Lab": Lab}
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            module = importlib.import_module(node.module)
            for alias in node.names:
                imported[alias.asname or alias.name] = getattr(module, alias.name)  # AttributeError: gone
    factories = made_by_lab()
    kinds: dict[str, type] = {}  # variable -> the class of what a lab factory returned into it
    for node in nodes:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            if isinstance(func, ast.Attribute) and getattr(func.value, "id", None) == "lab":
                if func.attr in factories:
                    for target in node.targets:
                        if isinstance(target, ast.Name):
                            kinds[target.id] = factories[func.attr][0]
    problems = []
    for call in (node for node in nodes if isinstance(node, ast.Call)):
        func, builds = call.func, None
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            owner = func.value.id
            cls = Lab if owner in ("lab", "Lab") else kinds.get(owner)
            if cls is None:
                continue
            if not hasattr(cls, func.attr):
                problems.append(f"{owner}.{func.attr}: {cls.__name__} has no such method")
                continue
            target = getattr(cls, func.attr)
            builds = factories.get(func.attr) if cls is Lab else None
            where = f"{owner}.{func.attr}"
        elif isinstance(func, ast.Name) and func.id in imported and callable(imported[func.id]):
            target, where = imported[func.id], func.id
        else:
            continue
        taken = accepted_keywords(target, builds)
        for keyword in call.keywords:
            if keyword.arg is not None and taken is not None and keyword.arg not in taken:
                problems.append(f"{where}(..., {keyword.arg}=...): not a keyword it takes")
    return problems


BLOCKS = python_blocks()
EXAMPLES = docstring_examples()


def test_the_readme_has_python_to_check():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.strip().splitlines()[0][:40])
def test_readme_python_matches_the_api(block):
    problems = api_problems(block)
    assert not problems, "\n".join(problems)


def test_the_check_catches_a_renamed_method_and_a_wrong_keyword():
    """The check can fail: a method the lab lost and a keyword no stage takes are both reported."""
    block = "from rlhf_lab import Lab\nlab = Lab.from_preset('tiny')\nppo = lab.ppo(p, reward=r, betta=0.1)\nppo.runn(3)\n"
    problems = "\n".join(api_problems(block))
    assert "betta" in problems and "ppo.runn" in problems


@pytest.mark.parametrize("where, block", EXAMPLES, ids=[where for where, _ in EXAMPLES])
def test_docstring_examples_match_the_api(where, block):
    problems = api_problems(block)
    assert not problems, "\n".join(problems)
