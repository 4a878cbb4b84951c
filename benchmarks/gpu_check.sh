#!/usr/bin/env bash
# The GPU check: one prepared script for one H100/H200, at most 8 minutes, writing benchmarks/results_gpu.md.
#
#   bash benchmarks/gpu_check.sh [--out FILE] [--work DIR] [--sections env,tests,...] [--dry-run]
#
# Sections, each under its own time limit (seconds), in this order: env 20, tests 100 (the CUDA tests),
# train_hd 140 (pix2pixHD global at 1024x512: plain fp32 eager, the library default, bf16 + channels_last +
# compile), local 70 (the local enhancer at 2048x1024 with and without activation checkpointing: time and
# torch.cuda.max_memory_allocated), infer 55 (translate throughput and the editor's latency at 1024x512),
# train_p2p 70 (pix2pix at 256x256, the same three variants): 455 s in all. The report is rewritten after
# every section, so a section that fails or runs out of time leaves the others' results; --sections runs
# some of them again into the same --work folder (a rerun after a fix).
#
# Python: $PYTHON, else .venv/bin/python, else python3, else python: the first whose torch sees a GPU (with
# --dry-run: the first with torch). The package runs from src/ (PYTHONPATH); it needs numpy, pillow, tqdm and
# safetensors, which PyTorch images have; where one is missing, wheels in .whl/ are installed offline.
# --dry-run: every section at tiny sizes on the CPU, in about a minute on a quiet 2-core machine (the suite
# runs it), each limit 4x the GPU one.
set -u
cd "$(dirname "$0")/.."
REPO=$(pwd)
OUT=benchmarks/results_gpu.md
WORK=""
SECTIONS="env,tests,train_hd,local,infer,train_p2p"
DRY=0
ARGS="$*"
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --sections) SECTIONS=$2; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$WORK" ] || WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
mkdir -p "$WORK" "$(dirname "$OUT")"
limit() {  # seconds for a section (x4 in a dry run: the CPUs running it may be shared)
  local s
  case "$1" in env) s=20 ;; tests) s=100 ;; train_hd) s=140 ;; local) s=70 ;; infer) s=55 ;; train_p2p) s=70 ;;
    *) s=0 ;; esac
  [ $DRY = 1 ] && s=$((s * 4))
  echo $s
}

# -- Python with torch (and a GPU unless --dry-run)
CHECK='import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)'
[ $DRY = 1 ] && CHECK='import torch'
PY=""
for cand in "${PYTHON:-}" .venv/bin/python python3 python; do
  [ -n "$cand" ] || continue
  command -v "$cand" >/dev/null 2>&1 || continue
  if "$cand" -c "$CHECK" >/dev/null 2>&1; then PY=$cand; break; fi
done
fail_setup() {
  { echo "# GPU check"; echo; echo "- command: \`bash benchmarks/gpu_check.sh $ARGS\`"; echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')";
    echo; echo "**Not run**: $1"; } >"$OUT"
  echo "gpu_check.sh: $1" >&2
  exit 1
}
[ -n "$PY" ] || fail_setup "no Python whose torch $([ $DRY = 1 ] && echo imports || echo 'sees a CUDA GPU') (tried \$PYTHON, .venv/bin/python, python3, python)."
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ! "$PY" -c 'import numpy, PIL, tqdm, safetensors, pytest' >/dev/null 2>&1; then
  if ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" .whl/*.whl >&2 || true
    export PYTHONPATH="$PYTHONPATH:$WORK/site"
  fi
  missing=$("$PY" -c 'import importlib.util as u; print(" ".join(m for m in ("numpy", "PIL", "tqdm", "safetensors", "pytest") if u.find_spec(m) is None))')
  [ -z "$missing" ] || fail_setup "$PY lacks $missing (carry wheels in .whl/, see /work/.library/device/README.md)."
fi
"$PY" -c 'import pix2pix' || fail_setup "the package does not import with $PY (PYTHONPATH=$REPO/src)."
DRYFLAG=""; [ $DRY = 1 ] && DRYFLAG="--dry-run"
COMMAND="bash benchmarks/gpu_check.sh $ARGS"
echo "gpu_check.sh: $PY ($("$PY" -c 'import torch; print(torch.__version__)')), work folder $WORK" >&2

# -- the sections, each in its own process under its own limit; the report after each
report() { "$PY" benchmarks/gpu_check.py report --work "$WORK" --out "$OUT" --command "$COMMAND" $DRYFLAG; }
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-$WORK/inductor-cache}"
start_all=$(date +%s)
for section in $(echo "$SECTIONS" | tr ',' ' '); do
  lim=$(limit "$section")
  [ "$lim" -gt 0 ] || { echo "gpu_check.sh: unknown section '$section'" >&2; exit 2; }
  echo "== $section (limit $lim s)" >&2
  t0=$(date +%s)
  timeout --kill-after=10 "$lim" "$PY" benchmarks/gpu_check.py "$section" --work "$WORK" $DRYFLAG \
    >"$WORK/$section.log" 2>&1
  rc=$?
  echo "$rc $(( $(date +%s) - t0 )) $lim" >"$WORK/$section.status"
  [ $rc = 0 ] || { echo "   $section: exit status $rc; last lines:" >&2; tail -n 5 "$WORK/$section.log" >&2; }
  report
done
echo "gpu_check.sh: $(( $(date +%s) - start_all )) s; wrote $OUT" >&2
grep -A6 '^## Targets' "$OUT" >&2 || true
