#!/usr/bin/env bash
# Speed numbers of the README (run on a quiet machine): edgesr bench per model and size, a 60 s memory run,
# and the pipeline overhead. Writes benchmarks/results/speed.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results/speed.jsonl
mkdir -p benchmarks/results && : > "$out"
S=${SECONDS_PER_RUN:-10}
for m in efdn_w16b2_x4_int8 efdn_w16b2_x4_float32 efdn_w16b2_x4_int8_80x60_edgetpu_ready; do   # the default x4
  for size in 160x120 320x240 640x480; do
    edgesr bench --model "$m" --input-size "$size" --seconds "$S" --json >> "$out"
  done
done
# the previous default (until session 3), ladder rungs, quality model
for m in srgan_w16b1_x4_int8 srgan_w24b2_x4_kd_int8 srgan_w8b1_x4_kd_int8 srgan_w32b3_x4_int8; do
  edgesr bench --model "$m" --input-size 320x240 --seconds "$S" --json >> "$out"
done
edgesr bench --input-size 320x240 --texture-threshold 8 --seconds "$S" --json >> "$out"   # adaptive tiles
edgesr bench --model srgan_w16b1_x2_int8 --input-size 320x240 --seconds "$S" --json >> "$out"
edgesr bench --model srgan_w16b1_x2_int8 --input-size 640x480 --seconds "$S" --json >> "$out"
edgesr bench --input-size 640x480 --seconds 60 --json >> "$out"   # memory over 60 s (default model)
python benchmarks/pipeline_overhead.py --size 320x240 --seconds 20 >> "$out"
cat "$out"
