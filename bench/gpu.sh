#!/usr/bin/env bash
# Everything the GPU should show, in one run (parts 1-3 about 13 minutes on an H100/H200, 4-5 a few more: drop
# them when the device time left is short):
#   1. CUDA correctness of the stack and every dropout path against the CPU (bench/cuda_check.py);
#   2. the dropout and skip-connection speed benchmarks on the GPU (ratios to no dropout / the plain stack);
#   3. ptb-medium-variational for 10 minutes (Gal & Ghahramani 2016; paper: test 79.7), then eval on test;
#   4. the output layers (sampled, NCE, adaptive) against the full softmax on the GPU;
#   5. rnnlab bench (rnnlab against the plain PyTorch loop) on ptb-medium, without and with variational dropout.
# Usage: bash bench/gpu.sh [OUT_DIR]     (prints everything; the run lands in OUT_DIR/ptb-medium-variational)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/gpu}
mkdir -p "$out"
py=${PYTHON:-python}
$py -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"
$py bench/cuda_check.py
(cd bench && $py dropout_speed.py --device cuda --steps 40 --rounds 2)
(cd bench && $py skip_speed.py --device cuda --shape ptb-medium --steps 40 --rounds 2)
$py -m rnnlab train --preset ptb-medium-variational --run-dir "$out/ptb-medium-variational" --quiet \
  --set train.device=cuda --set train.max_minutes=10
$py -m rnnlab eval --checkpoint "$out/ptb-medium-variational" --split test --device cuda
# 4. Output layers on the GPU: the layer alone at V = 10k / 100k / 793,471, where sampling starts to pay there
#    (model.output = auto's CUDA threshold), and a One-Billion-Word-shaped training step, full against sampled.
$py bench/output_speed.py --device cuda --steps 5
$py bench/output_speed.py --device cuda --crossover --steps 10
$py bench/large_vocab.py --device cuda --vocab 793471 --billion-word --steps 5 --rounds 2
# 5. `rnnlab bench` on ptb-medium against the plain PyTorch loop, without and with variational recurrent dropout
#    (goal on an H100/H200: ratio >= 1.5 with the dropout on).
$py -m rnnlab bench --preset ptb-medium --device cuda --steps 40 --rounds 3
$py -m rnnlab bench --preset ptb-medium --device cuda --steps 40 --rounds 3 --set regularization.recurrent_dropout=0.3
