#!/usr/bin/env bash
# The adding problem (Le et al. 2015 variant) at T = 100 and T = 200: a tanh RNN against an LSTM.
# Usage: bash experiments/adding.sh [OUT_DIR]   (about 40 minutes on 2 CPU cores)
set -euo pipefail
out=${1:-runs/adding}
mkdir -p "$out"
for T in 100 200; do
  for model in rnn lstm; do
    rnnlab train --preset "adding-$model" --run-dir "$out/$model-T$T" --quiet \
      --set task.length=$T --set train.epochs=40
  done
  rnnlab plot "$out/rnn-T$T" "$out/lstm-T$T" --labels "tanh RNN" "LSTM" --out "$out/adding-T$T.png"
done
