"""The package's layering, checked: small modules, no import circles, a core free of the Lab and widgets.

Layers (docs/CONTRIBUTING.md): store -> models/raters -> reward/stages/rl -> Lab -> demo/headless/cli,
with the notebook views (rlhf_lab/ui) beside them. Everything outside rlhf_lab/ui is "core".
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rlhf_lab"
WIDGET_LIBRARIES = ("ipywidgets", "anywidget", "plotly")
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _top_level_imports(path: Path) -> list[str]:
    """Modules imported when the file is imported (not inside functions or `if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.append(node.module)
                found.extend(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Try):
                visit(node.body)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                visit(node.body)
                visit(node.orelse)

    visit(tree.body)
    return found


def test_no_module_is_over_500_lines():
    long = {
        name: n
        for name, path in _modules().items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (split them by job): {long}"


def test_no_import_circle():
    modules = _modules()
    graph = {
        name: sorted({m for m in _top_level_imports(path) if m in modules and m != name})
        for name, path in modules.items()
    }
    # A `from pkg import name` edge to the package itself only counts when `name` is not a submodule.
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module in modules:
                if (
                    all(f"{node.module}.{a.name}" in modules for a in node.names)
                    and node.module in graph[name]
                ):
                    graph[name].remove(node.module)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module)


def test_core_modules_never_import_widget_libraries_at_import_time():
    offenders = {
        name: [m for m in _top_level_imports(path) if m.split(".")[0] in WIDGET_LIBRARIES]
        for name, path in _modules().items()
        if not name.startswith("rlhf_lab.ui")
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"core modules importing widget libraries: {offenders}"


# One interpreter for every import check (importing torch and transformers dominates the time):
# each step imports more and records what is loaded by then.
STEPS = {
    "core": "import rlhf_lab.rl, rlhf_lab.store, rlhf_lab.agreement",
    "ui": "import rlhf_lab.ui, rlhf_lab.active, rlhf_lab.attribution",
    "every_core_module": "\n".join(
        f"import {name}" for name in _modules() if not name.startswith("rlhf_lab.ui") and name != "rlhf_lab"
    ),
}


@pytest.fixture(scope="module")
def loaded() -> dict[str, list[str]]:
    """For each step, the widget libraries (and rlhf_lab.lab) loaded once its imports have run."""
    watched = (
        f"sorted(m for m in sys.modules if m.split('.')[0] in {WIDGET_LIBRARIES!r} or m == 'rlhf_lab.lab')"
    )
    code = "import json, sys\nout = {}\n" + "".join(
        f"{statement}\nout[{step!r}] = {watched}\n" for step, statement in STEPS.items()
    )
    code += "print(json.dumps(out))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_core_loads_neither_the_lab_nor_widgets(loaded):
    assert loaded["core"] == []


def test_ui_package_is_lazy(loaded):
    assert loaded["ui"] == []


def test_importing_every_core_module_loads_no_widget_library(loaded):
    assert [m for m in loaded["every_core_module"] if m != "rlhf_lab.lab"] == []
