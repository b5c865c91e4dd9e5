#!/usr/bin/env bash
# The test suite. Sets up .venv on first use, installs Debian's chromium for the browser tests
# when it is missing and we may (root + apt), then runs pytest with any extra arguments:
#   ./scripts/test.sh                                  everything (unit, slow, notebooks, browser)
#   ./scripts/test.sh -m "not slow and not browser"    the quick set, in seconds
#   ./scripts/test.sh -n 0 tests/test_sft.py           one process, one file
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RLHF_LAB_EXTRAS="${RLHF_LAB_EXTRAS-dev}" source "$ROOT/scripts/setup_env.sh"  # with the test tools (dev extras)
cd "$ROOT"

if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[test] installing Debian chromium for the browser tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false
"${RLHF_LAB_VENV:-$ROOT/.venv}/bin/ruff" check rlhf_lab tests bench scripts
# Two pytest-xdist workers: the tests pin torch to one thread (tests/conftest.py), so the second worker
# uses the second core; each browser test module stays on one worker (tests/conftest.py's scheduler).
# RLHF_LAB_TEST_WORKERS sets the count (0: one process); a later "-n N" argument overrides it too.
workers="${RLHF_LAB_TEST_WORKERS:-2}"
exec "${RLHF_LAB_VENV:-$ROOT/.venv}/bin/pytest" -ra -n "$workers" --dist loadscope "$@"
