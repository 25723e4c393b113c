#!/usr/bin/env bash
# The prepared GPU check (issue 15), one command of at most 8 minutes on the GPU machine:
#   1. installs the packages that machine lacks from the wheels carried in .whl/ (benchmarks/fetch_gpu_wheels.sh),
#   2. runs every task's smoke profile on trainer=gpu,
#   3. bench perf --accelerator gpu (the CPU targets' ratios on CUDA, plus the bf16 CNN case in examples/s),
#   4. one paper profile on the GPU (PAPER=..., default experiment=iteration_heads_gpu) with its time, cut off at
#      what is left of the 8 minutes.
# Usage (device tool: carry [".whl"]):  bash benchmarks/gpu_check.sh
#        dry run on a machine without a GPU:  bash benchmarks/gpu_check.sh --accelerator cpu [--paper]
#   --accelerator cpu: no install (this checkout's .venv), smoke profiles on trainer=cpu, a tiny bench perf, and no
#   paper profile unless --paper is given.
set -uo pipefail
cd "$(dirname "$0")/.."
ACCEL=gpu
RUN_PAPER=auto
BUDGET_S=${BUDGET_S:-480}
while [ $# -gt 0 ]; do
  case "$1" in
    --accelerator) ACCEL=$2; shift 2 ;;
    --accelerator=*) ACCEL=${1#*=}; shift ;;
    --paper) RUN_PAPER=yes; shift ;;
    --no-paper) RUN_PAPER=no; shift ;;
    *) echo "gpu_check: unknown argument $1 (--accelerator gpu|cpu, --paper, --no-paper)" >&2; exit 2 ;;
  esac
done
case "$ACCEL" in gpu|cpu) ;; *) echo "gpu_check: --accelerator is gpu or cpu, got $ACCEL" >&2; exit 2 ;; esac
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} WANDB_MODE=offline WANDB_SILENT=true
OUT_DIR=${OUT:-$(mktemp -d)}/gpu_check
mkdir -p "$OUT_DIR"
WORK=$(mktemp -d)

if [ "$ACCEL" = gpu ]; then
  PY=python3
  ls .whl/*.whl >/dev/null 2>&1 || { echo "gpu_check: no wheels in .whl/ (run benchmarks/fetch_gpu_wheels.sh here and carry .whl)" >&2; exit 2; }
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  $PY -c "import torch; assert torch.cuda.is_available(), 'torch sees no GPU'; print('torch', torch.__version__, torch.cuda.get_device_name())" || exit 1
  TRAINER=gpu
  PERF_ARGS=(--accelerator gpu --epochs 30 --repeats 3)
  [ "$RUN_PAPER" = auto ] && RUN_PAPER=yes
else
  PY=${PY:-.venv/bin/python}
  TRAINER=cpu
  PERF_ARGS=(--accelerator cpu --epochs 2 --repeats 1 --threads 1)
  [ "$RUN_PAPER" = auto ] && RUN_PAPER=no
fi
echo "gpu_check: accelerator $ACCEL, python $($PY -c 'import sys; print(sys.version.split()[0])'), $(uptime)"

TASKS=$($PY -c "from bench.harness.registry import tasks; print(' '.join(sorted(tasks())))") || exit 1
declare -A SMOKE
failed=0
for t in $TASKS; do
  s=$(date +%s)
  if $PY -m bench fit "task=$t" profile=smoke "trainer=$TRAINER" logger=none print_summary=false \
      "results_dir=$WORK/results" "work_dir=$WORK/runs" >"$OUT_DIR/smoke_$t.log" 2>&1; then
    SMOKE[$t]="ok   $(( $(date +%s) - s )) s"
  else
    SMOKE[$t]="FAIL $(( $(date +%s) - s )) s: $(grep -E '^(error|[A-Za-z]*Error)' "$OUT_DIR/smoke_$t.log" | tail -1)"
    failed=$((failed + 1))
  fi
  echo "smoke $t on trainer=$TRAINER: ${SMOKE[$t]}"
done

echo "== bench perf ${PERF_ARGS[*]} (at $(elapsed) s) =="
$PY -m bench perf "${PERF_ARGS[@]}" 2>&1 | grep -v -E '━|Checkpoint directory' | tee "$OUT_DIR/perf.txt"
perf_rc=${PIPESTATUS[0]}
[ "$perf_rc" = 0 ] || failed=$((failed + 1))

paper_line="paper profile: not run (--accelerator cpu without --paper)"
if [ "$RUN_PAPER" = yes ]; then
  PAPER=${PAPER:-experiment=iteration_heads_gpu}
  left=$(( BUDGET_S - $(elapsed) - 15 ))
  if [ "$left" -lt 30 ]; then
    paper_line="paper profile $PAPER: not run (only $left s of the ${BUDGET_S} s left)"
  else
    echo "== paper profile $PAPER on trainer=$TRAINER, cut off after $left s (at $(elapsed) s) =="
    s=$(date +%s)
    TIMEFORMAT="cpu %U s user + %S s sys"
    { time timeout "$left" $PY -m bench fit "$PAPER" "trainer=$TRAINER" logger=none "results_dir=$WORK/results" \
        "work_dir=$WORK/runs" >"$OUT_DIR/paper.log" 2>&1 ; } 2>"$OUT_DIR/paper.time"
    rc=$?
    took=$(( $(date +%s) - s ))
    cpu=$(tail -1 "$OUT_DIR/paper.time")
    if [ "$rc" = 0 ]; then paper_line="paper profile $PAPER: finished in $took s wall ($cpu)"
    elif [ "$rc" = 124 ]; then paper_line="paper profile $PAPER: NOT finished, cut off at $took s"; failed=$((failed + 1))
    else paper_line="paper profile $PAPER: FAILED (status $rc) after $took s: $(grep -E '^error' "$OUT_DIR/paper.log" | tail -1)"; failed=$((failed + 1))
    fi
    grep -E "test/|PASS|FAIL" "$OUT_DIR/paper.log" | grep -v '━' | tail -15
  fi
fi

echo
echo "== gpu_check summary (accelerator $ACCEL, $(elapsed) s in all; $(uptime | sed 's/.*load/load/')) =="
for t in $TASKS; do echo "  smoke $t: ${SMOKE[$t]}"; done
echo "  perf: $(grep '^targets' "$OUT_DIR/perf.txt" || echo "status $perf_rc")"
grep '^CNN case' "$OUT_DIR/perf.txt" | sed 's/^/  /'
echo "  $paper_line"
echo "  logs: $OUT_DIR"
rm -rf "$WORK"
[ "$failed" = 0 ]
