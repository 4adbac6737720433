#!/usr/bin/env bash
# One leased-GPU session, as one command (docs/training_bundled_model.md, section 9):
# CUDA test, GPU benchmark options, then pose training from the bundled weights on crops that
# the machine's CPU cores render meanwhile (held on the GPU: --crops-on-device, no loader
# processes), until the wall-clock deadline; each variant's weights come back in OUT/NAME, in
# parts (scripts/device_weights.py; join them with its `join`).
#
#   [VARIANTS="reaug:true control:false"] [DETECTOR=0] bash scripts/train_on_leased_gpu.sh OUT SECONDS
#
# DETECTOR=1 (the default) also trains the person detector, from the bundled one, on the same
# renders (the renderers store each image at the detector's input size; detector_pool), into
# OUT/detector. A call returns at most 8 files: DETECTOR=1 allows one pose variant.
# DETECTOR_SIDE (320) is the detector's training input side; DETECTOR_PRECISION (fp32, as
# measured so far) may be bf16 or auto. BODY_TILT (0.25) is the renderers' --body-tilt: the share
# of people turned as whole bodies (lying, upside down; data.generator.body_tilt).
# A follow-up call on the still-warm machine continues the first call's runs on its renders
# (renderers skip chunks already there), e.g. with a warm restart at a lower rate:
#   VARIANTS=reaug2:true INIT=/tmp/gpu_run/reaug/model LR=3e-4 WARMUP=100 DETECTOR_NAME=detector2 \
#   DETECTOR_INIT=/tmp/gpu_run/detector/detector DETECTOR_LR=3e-4 BENCHMARKS=0 bash ... OUT SECONDS
#
# Expects: python3 with torch (CUDA), numpy, opencv, scipy, scikit-image, safetensors, tqdm;
# the humanoid URDF and motion clips in $METRABS_HUMANOID_DATA (no pybullet needed).
set -u
out=${1:?OUT folder}; total=${2:?seconds for the whole script}
start=$(date +%s); deadline=$((start + total))
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
cache=/tmp/gpu_cache; run=/tmp/gpu_run; renderers=${RENDERERS:-14}; device=${DEVICE:-cuda}
variants=${VARIANTS:-reaug:true}; detector=${DETECTOR:-1}; detector_name=${DETECTOR_NAME:-detector}
if [ "$detector" = 1 ] && [ "$(echo $variants | wc -w)" -gt 1 ]; then
  echo "DETECTOR=1 takes one pose variant (a call returns at most 8 files)" >&2; exit 2
fi
detector_side=${DETECTOR_SIDE:-320}  # the detector's training input side (images stored at it)
detector_images=0; [ "$detector" = 1 ] && detector_images=$detector_side
mkdir -p "$out" "$cache"
renderer_pids=()
log() { echo "[$(( $(date +%s) - start )) s] $*"; }
# a trainer's last N output lines without its progress-bar updates, each marked [NAME]
last_lines() { tr '\r' '\n' | grep -v "it/s\]$\|s/it\]$" | tail -"$1" | sed "s/^/[$2] /"; }

log "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader)"
log "cores: $(nproc); python $(python3 -V 2>&1); torch $(python3 -c 'import torch;print(torch.__version__)')"
for k in $(seq 0 $((renderers - 1))); do
  OMP_NUM_THREADS=1 python3 -m metrabs_ros.train.crop_cache "$cache" --chunks 4000 --seed "${SEED:-31}" \
    --pose-mixing 0.5 --body-tilt "${BODY_TILT:-0.25}" --detector-images "$detector_images" \
    --worker "$k" --workers "$renderers" \
    >"/tmp/render_$k.log" 2>&1 &
  renderer_pids+=($!)
done

if [ "${CUDA_TESTS:-1}" = 1 ]; then  # while the first chunks render
  log "CUDA tests"
  timeout 120 python3 -m pytest -q -p no:cacheprovider test/test_model.py test/test_estimator.py \
    -k cuda 2>&1 | tail -3
fi

if [ "${BENCHMARKS:-1}" = 1 ]; then  # BENCHMARKS=0: train only (figures already taken)
  log "benchmarks: model throughput (GPU options)"
  for opts in "--dtype float32" "--dtype float16" "--dtype bfloat16" \
              "--dtype bfloat16 --channels-last" "--dtype bfloat16 --channels-last --compile"; do
    log "model_throughput $opts"
    timeout 150 python3 benchmarks/model_throughput.py --device "$device" --seconds 1 \
      --batch-sizes ${BENCH_BATCHES:-1 8 64 256} $opts 2>&1 | grep -v "^$" | tail -8
  done
  log "benchmarks: estimator stages (GPU crops)"
  timeout 90 python3 benchmarks/estimator_stages.py --device "$device" --images 3 --people 1 3 10 \
    --num-aug 1 5 2>&1 | tail -10
  log "benchmarks: training step"
  timeout 90 python3 benchmarks/training_throughput.py --device "$device" --batch-size 256 --samples 20 \
    --steps 20 2>&1 | tail -8
fi

chunks=$(ls -d "$cache"/chunk_????? 2>/dev/null | wc -l)
log "rendered so far: $chunks chunks"
while [ "$chunks" -lt 8 ] && [ "$(date +%s)" -lt $((deadline - 120)) ]; do
  sleep 5; chunks=$(ls -d "$cache"/chunk_????? 2>/dev/null | wc -l)
done
budget=$((deadline - $(date +%s) - 50))
# VARIANTS: NAME:REAUGMENT pairs, trained side by side on the same renders (an A/B at equal
# time); REAUGMENT true turns, zooms and mirrors every drawn crop afresh (crop_warp)
log "training for $budget s: $variants$([ "$detector" = 1 ] && echo " + detector")"
trainer_pids=()
if [ "$detector" = 1 ]; then
  python3 -m metrabs_ros.train.detector_trainer "$run/$detector_name" --data-dir "$cache" \
    --init-from "${DETECTOR_INIT:-bundled}" --batch-size "${DETECTOR_BATCH:-64}" \
    --learning-rate "${DETECTOR_LR:-1e-3}" --warmup-steps "${WARMUP:-100}" --steps 1000000 \
    --checkpoint-every 5000 --time-budget-s "$budget" --device "$device" \
    --zoom-on-device "${DETECTOR_ZOOM:-true}" --input-side "$detector_side" \
    --precision "${DETECTOR_PRECISION:-fp32}" 2>&1 | last_lines 3 detector &
  trainer_pids+=($!)
fi
for variant in $variants; do
  name=${variant%%:*}; reaugment=${variant##*:}
  python3 -m metrabs_ros.train.trainer "$run/$name" --data-dir "$cache" --init-from "${INIT:-bundled}" \
    --stride 16 --batch-size "${BATCH:-256}" --learning-rate "${LR:-1e-3}" --warmup-steps "${WARMUP:-300}" \
    --absolute-loss-start 0 --absolute-loss-ramp 1 --steps 1000000 --checkpoint-every 5000 \
    --time-budget-s "$budget" --crops-on-device true --reaugment-on-device "$reaugment" \
    --data-workers 0 --precision fp32 --channels-last true --device "$device" \
    2>&1 | last_lines 5 "$name" &
  trainer_pids+=($!)
done
wait "${trainer_pids[@]}"
kill "${renderer_pids[@]}"
log "rendered: $(ls -d "$cache"/chunk_????? | wc -l) chunks, $(python3 -c "
import numpy as np, glob
print(sum(np.load(p, mmap_mode='r').shape[0] for p in glob.glob('$cache/chunk_?????/crops.npy')))") crops"
for variant in $variants; do
  name=${variant%%:*}
  log "$name steps: $(tail -1 "$run/$name/train_log.jsonl")"
  # at most 8 files (16 MiB each, 64 MiB in all) come back per call: float16 for two variants
  python3 scripts/device_weights.py split "$run/$name" "$out/$name" \
    $([ "$(echo $variants | wc -w)" -gt 1 ] && echo --half)
done
if [ "$detector" = 1 ]; then
  log "detector steps: $(tail -1 "$run/$detector_name/train_log.jsonl")"
  mkdir -p "$out/$detector_name"
  cp "$run/$detector_name"/detector/detector.* "$run/$detector_name/train_log.jsonl" "$out/$detector_name/"
fi
tail -2 /tmp/render_0.log
log "done"
