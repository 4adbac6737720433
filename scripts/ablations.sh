#!/usr/bin/env bash
# The paper's two claims in miniature, at a small equal budget per run (README, "Ablations"):
#   (a) MeTRo metric heatmaps vs a 2.5D heatmap baseline on truncated crops;
#   (b) training with vs without the absolute pose loss: absolute MPJPE.
# Usage: scripts/ablations.sh OUT_DIR TEST_SET [STEPS]   (TEST_SET from metrabs-synth --split test)
# Each run: ResNet-18, crop 128, batch 16, same seed (same initialization and training data).
set -euo pipefail
out=$1 test_set=$2 steps=${3:-800}
common=(--crop-side 128 --batch-size 16 --steps "$steps" --learning-rate 1e-3
        --warmup-steps $((steps / 8)) --checkpoint-every 200 --data-workers 0)
metrabs-train "$out/metro" "${common[@]}" --absolute-loss-start $((steps * 3 / 8)) \
  --weak-perspective-until $((steps * 5 / 8))
metrabs-train "$out/metro_no_abs" "${common[@]}" --absolute-loss-start 1000000000
metrabs-train "$out/heatmap_25d" "${common[@]}" --model-kind 2.5d
metrabs-eval --model "$out/metro/model" --data "$test_set" --out "$out/eval_metro" --num-aug 1
metrabs-eval --model "$out/metro_no_abs/model" --data "$test_set" --out "$out/eval_metro_no_abs" \
  --num-aug 1
python -m metrabs_ros.train.baseline_25d --metro "$out/metro/model" \
  --baseline "$out/heatmap_25d/model" --data "$test_set" --out "$out/metro_vs_25d.json"
