#!/usr/bin/env bash
# A tanh RNN whose W_hh starts at sigma_max = 1.5 (exploding regime), trained on the adding problem
# (T = 100) with plain SGD, with and without clipping the global gradient norm (Pascanu et al. 2013).
# Usage: bash experiments/clipping.sh [OUT_DIR]   (a few minutes on 2 CPU cores)
set -uo pipefail
out=${1:-runs/clipping}
mkdir -p "$out"
common=(--preset adding-rnn --quiet --set model.recurrent_init=orthogonal --set model.recurrent_scale=1.5
        --set train.optimizer=sgd --set train.lr=0.05 --set train.epochs=5 --set train.log_every=10)
# Without clipping the run may diverge: rnnlab then stops with an error and keeps the metrics so far.
rnnlab train "${common[@]}" --run-dir "$out/no-clip" --set train.clip_norm=0
rnnlab train "${common[@]}" --run-dir "$out/clip-1" --set train.clip_norm=1.0
rnnlab plot "$out/no-clip" "$out/clip-1" --labels "no clipping" "clip 1.0" --out "$out/clipping.png"
