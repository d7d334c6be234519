#!/usr/bin/env bash
# What a GPU machine should show, in parts sized for a 15-minute device budget (one call runs at most 10 minutes):
#   check      correctness on CUDA: the stack, dropout paths and output layers against the CPU (cuda_check.py);
#              the training step without host synchronisation, CUDA-graph replay = eager step, bf16 autocast
#              (gpu_step_check.py)                                                              ~1 min expected
#   bench      `rnnlab bench` on ptb-medium with variational recurrent dropout against the plain PyTorch loop:
#              eager fp32, train.cuda_graphs, train.precision = bf16 (goal: ratio >= 1.5; moonshot 2)   ~2 min
#   precision  bf16 against fp32 on the same schedule, ptb-medium, 1500 steps (goal: within 1%)        ~1 min
#   train4     ptb-medium-variational, captured, 4 minutes of training, then test (goal: <= 82.7)      ~5 min
#   train8     the same for 8 minutes (goal: <= 78.4): a call of its own                                ~9 min
#   extras     the dropout / skip / output-layer speed benchmarks and the 793k-vocabulary step         ~5 min
# Default: check bench precision train4 (about 9 minutes). The timings above are estimates until measured.
# Usage: bash bench/gpu.sh [PART ...]          (OUT=runs/gpu: where the training runs land)
#        DEVICE=cpu DRY=1 bash bench/gpu.sh check bench precision   (a dry run of the script on the CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/gpu}
device=${DEVICE:-cuda}
py=${PYTHON:-python}
dry=${DRY:-}
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(check bench precision train4)
mkdir -p "$out"
if [ "$device" = cuda ]; then
  $py -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"
fi
steps=40
[ -n "$dry" ] && steps=2
# rnnlab's side and the baseline alternate in one process (rnnlab.benchmark); ptb-medium with variational dropout
bench() { $py -m rnnlab bench --preset ptb-medium --device "$device" --steps "$steps" --rounds 3 \
            --set regularization.recurrent_dropout=0.3 "$@"; }
train() {  # minutes, run name
  $py -m rnnlab train --preset ptb-medium-variational --run-dir "$out/$2" --overwrite --quiet \
    --set train.device="$device" --set train.max_minutes="$1" --set train.cuda_graphs=true
  $py -m rnnlab eval --checkpoint "$out/$2" --split test --device "$device"
}
for part in "${parts[@]}"; do
  echo "== $part"
  case $part in
    check)
      if [ "$device" = cuda ]; then $py bench/cuda_check.py; fi
      $py bench/gpu_step_check.py --device "$device" ;;
    bench)
      bench
      if [ "$device" = cuda ]; then
        bench --set train.cuda_graphs=true
        bench --set train.precision=bf16
      fi ;;
    precision)
      if [ -n "$dry" ]; then $py bench/precision_check.py --device "$device" --steps 5 --dry-run
      else $py bench/precision_check.py --device "$device" --preset ptb-medium --steps 1500; fi ;;
    train4) train 4 ptb-medium-variational-4min ;;
    train8) train 8 ptb-medium-variational-8min ;;
    extras)
      (cd bench && $py dropout_speed.py --device "$device" --steps "$steps" --rounds 2)
      (cd bench && $py skip_speed.py --device "$device" --shape ptb-medium --steps "$steps" --rounds 2)
      $py bench/output_speed.py --device "$device" --steps 5
      $py bench/output_speed.py --device "$device" --crossover --steps 10
      $py bench/large_vocab.py --device "$device" --vocab 793471 --billion-word --steps 5 --rounds 2 ;;
    *) echo "gpu.sh: unknown part '$part' (check bench precision train4 train8 extras)" >&2; exit 2 ;;
  esac
done
