#!/usr/bin/env bash
# The main job. Sets up .venv on first use, then:
#   ./scripts/lab.sh              opens JupyterLab on labs/ (127.0.0.1, token printed)
#   ./scripts/lab.sh demo         runs SFT -> reward model -> RL (RLOO) headless and prints a report
#   ./scripts/lab.sh serve ...    workshop mode (see README)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RLHF_LAB_EXTRAS="${RLHF_LAB_EXTRAS-}" source "$ROOT/scripts/setup_env.sh"  # the lab alone, no test tools
cd "$ROOT"
if [ $# -eq 0 ]; then set -- lab; fi
exec "${RLHF_LAB_VENV:-$ROOT/.venv}/bin/rlhf-lab" "$@"
