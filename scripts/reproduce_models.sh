#!/usr/bin/env bash
# The exact commands that produced every shipped model and every row of the README's quality table.
# Usage: scripts/reproduce_models.sh [stage ...]
#   stages: split realtime baselines teacher ladder export_models table efdn_long codec_model kd_default h264_model
#           efdn_import y_students
#   (efdn_long, session 3: picks checkpoints on a held-out split of the training data, never on Set5/Set14)
# (default: all)
# Runs are resumable: re-running a stage continues from runs/<name>/last.* (add steps by raising --steps).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/train}
VAL=${VAL:-../shared/data/val}
T=${THREADS:-1}   # threads per run; two runs share a 2-core machine
train() { edgesr-convert train --data "$DATA" --val "$VAL/Set5" --threads "$T" --resume "$@"; }

realtime() {  # the shipped real-time students (L1, cosine LR, 32 patches per image)
  train --arch srgan --scale 4 --width 16 --blocks 1 --steps 40000 --patch 32 --per-image 32 --val-every 2000 --out runs/srgan_w16b1_x4 &
  train --arch srgan --scale 2 --width 16 --blocks 1 --steps 30000 --patch 48 --per-image 32 --val-every 2000 --out runs/srgan_w16b1_x2
  wait
}

baselines() {  # equal schedule for a fair table: same data, patches, batch, steps, LR for every architecture
  local common=(--scale 4 --steps 4000 --patch 32 --per-image 32 --val-every 1000)
  train --arch espcn --no-anchor "${common[@]}" --out runs/table_espcn_x4 &
  train --arch fsrcnn "${common[@]}" --out runs/table_fsrcnn_x4
  wait
  train --arch efdn --width 16 --blocks 2 "${common[@]}" --out runs/table_efdn_w16b2_x4 &
  train --arch srgan --width 16 --blocks 1 "${common[@]}" --out runs/table_srgan_w16b1_x4
  wait
}

teacher() {  # larger float teacher, then a student distilled from it on the same 4000-step schedule
  T=2 train --arch srgan --scale 4 --width 32 --blocks 3 --steps 12000 --patch 32 --per-image 32 --val-every 2000 --out runs/teacher_srgan_w32b3_x4
  T=2 edgesr-convert distill --teacher runs/teacher_srgan_w32b3_x4 --arch srgan --scale 4 --width 16 --blocks 1 \
    --steps 4000 --patch 32 --per-image 32 --val-every 1000 --data "$DATA" --val "$VAL/Set5" --threads 2 --resume \
    --out runs/table_srgan_w16b1_x4_distilled
}

ladder() {  # the latency ladder: three students of different cost, one recipe, distilled from the one teacher
  local d=(--teacher runs/teacher_srgan_w32b3_x4 --arch srgan --scale 4 --steps 8000 --patch 32 --per-image 32
           --val-every 2000 --data "$DATA" --val "$VAL/Set5" --threads "$T" --resume)
  edgesr-convert distill "${d[@]}" --width 24 --blocks 2 --out runs/ladder_srgan_w24b2_x4 &
  { edgesr-convert distill "${d[@]}" --width 8 --blocks 1 --out runs/ladder_srgan_w8b1_x4 &&
    edgesr-convert distill "${d[@]}" --width 16 --blocks 1 --out runs/ladder_srgan_w16b1_x4; }
  wait
  for r in w24b2 w16b1 w8b1; do
    edgesr-convert quantize "runs/ladder_srgan_${r}_x4" --dtype int8 --name "srgan_${r}_x4_kd_int8" --data "$DATA" \
      --eval "$VAL/Set5" --eval "$VAL/Set14" --out edgesr/models
  done
}

export_models() {  # shipped files: int8 (CPU, dynamic shape), float32 twins, Edge TPU-ready tiles, teacher card
  local q=(--data "$DATA" --eval "$VAL/Set5" --eval "$VAL/Set14" --out edgesr/models)
  edgesr-convert quantize runs/srgan_w16b1_x4 --dtype float32 --dtype int8 "${q[@]}"
  # x2: this session's runs/ was lost; the run folder was recovered from the shipped float32 twin first:
  #   python scripts/recover_run.py edgesr/models/srgan_w16b1_x2_float32.tflite edgesr/models/srgan_w16b1_x2_int8.json runs/srgan_w16b1_x2
  edgesr-convert quantize runs/srgan_w16b1_x2 --dtype float32 --dtype int8 "${q[@]}"
  edgesr-convert quantize runs/srgan_w16b1_x4 --dtype int8 --tile 80x60 --edgetpu "${q[@]}"
  edgesr-convert compile edgesr/models/srgan_w16b1_x4_int8_80x60_edgetpu_ready.tflite || true
  edgesr-convert quantize runs/teacher_srgan_w32b3_x4 --dtype float32 "${q[@]}" --out runs/teacher_export
  cp runs/teacher_export/srgan_w32b3_x4_float32.json edgesr/models/teacher_srgan_w32b3_x4_float32.json  # card only: too slow to ship
}

table() {  # float32 + int8 of every comparison run, measured on Set5/Set14 into their cards; then the README table
  for r in runs/table_* runs/teacher_srgan_w32b3_x4; do
    [ -f "$r/state.json" ] || continue
    edgesr-convert quantize "$r" --dtype float32 --dtype int8 --data "$DATA" --eval "$VAL/Set5" --eval "$VAL/Set14" \
      --out "runs/table_models/$(basename "$r")"
  done
  python benchmarks/quality_table.py runs/table_models edgesr/models > benchmarks/results/quality_table.md
}

split() {  # 472 training / 20 held-out images (every 25th of the sorted training set) as symlinks under runs/split
  mkdir -p runs/split/train runs/split/holdout
  local i=0 f
  while IFS= read -r f; do
    local name; name="$(basename "$(dirname "$f")")_$(basename "$f")"
    if [ $((i % 25)) -eq 0 ]; then ln -sf "$f" "runs/split/holdout/$name"; else ln -sf "$f" "runs/split/train/$name"; fi
    i=$((i + 1))
  done < <(find "$(realpath "$DATA")" -type f | sort)
}

efdn_long() {  # the session-3 candidate default: EDBB student (re-parameterized to plain 3x3 convs), long L1 with
  # 48x48 LR patches, then a short L2 fine-tune; checkpoints picked on runs/split/holdout
  local h=(--data runs/split/train --val runs/split/holdout --threads 1 --resume --patch 48 --per-image 32)
  train_split --arch efdn --scale 4 --width 16 --blocks 2 --steps 100000 --val-every 5000 "${h[@]}" --out runs/efdn_w16b2_x4_long
  train_split --arch efdn --scale 4 --width 16 --blocks 2 --steps 5000 --val-every 1000 --loss l2 --lr 1e-4 \
    --init runs/efdn_w16b2_x4_long/best.weights.h5 "${h[@]}" --out runs/efdn_w16b2_x4_l2
  local q=(--data "$DATA" --eval "$VAL/Set5" --eval "$VAL/Set14" --out edgesr/models)
  edgesr-convert quantize runs/efdn_w16b2_x4_l2 --dtype float32 --dtype int8 "${q[@]}"
  edgesr-convert quantize runs/efdn_w16b2_x4_l2 --dtype int8 --tile 80x60 --edgetpu "${q[@]}"
  edgesr-convert compile edgesr/models/efdn_w16b2_x4_int8_80x60_edgetpu_ready.tflite || true
  python benchmarks/learning_curve.py runs/efdn_w16b2_x4_long runs/efdn_w16b2_x4_l2 --out benchmarks/results/learning_curve.png
}
train_split() { edgesr-convert train "$@"; }

codec_model() {  # robot-side x4 for WebP-compressed LR: the default fine-tuned on codec-degraded LR patches
  python scripts/recover_run.py edgesr/models/srgan_w16b1_x4_float32.tflite edgesr/models/srgan_w16b1_x4_int8.json \
    runs/srgan_w16b1_x4_recovered
  edgesr-convert train --arch srgan --scale 4 --width 16 --blocks 1 --steps 4000 --lr 2e-4 --patch 48 --per-image 32 \
    --val-every 1000 --lr-codec webp:20-90 --init runs/srgan_w16b1_x4_recovered/best.weights.h5 \
    --data runs/split/train --val runs/split/holdout --threads 1 --out runs/srgan_w16b1_x4_codec
  cp runs/srgan_w16b1_x4_codec/last.weights.h5 runs/srgan_w16b1_x4_codec/best.weights.h5  # see README
  edgesr-convert quantize runs/srgan_w16b1_x4_codec --dtype int8 --name srgan_w16b1_x4_codec_int8 --data "$DATA" \
    --eval "$VAL/Set5" --eval "$VAL/Set14" --out edgesr/models
}

kd_default() {  # session 4: the default, continued with distillation from the shipped quality model (int8 .tflite
  # teacher: its outputs on each whole training image are cached with the patches); picked on the holdout split
  python scripts/recover_run.py edgesr/models/efdn_w16b2_x4_float32.tflite edgesr/models/efdn_w16b2_x4_int8.json \
    runs/efdn_default
  edgesr-convert distill --teacher edgesr/models/srgan_w32b3_x4_int8.tflite --init runs/efdn_default/best.weights.h5 \
    --arch efdn --scale 4 --width 16 --blocks 2 --steps 40000 --patch 48 --per-image 32 --lr 3e-4 \
    --val runs/split/holdout --val-every 2000 --data runs/split/train --threads 1 --resume --out runs/efdn_w16b2_x4_kd
  edgesr-convert quantize runs/efdn_w16b2_x4_kd --dtype float32 --dtype int8 --data "$DATA" --eval runs/split/holdout \
    --eval "$VAL/Set5" --eval "$VAL/Set14" --out runs/kd_export
}

h264_model() {  # session 5: robot-side x4 for H.264 LR (auto's h264_lr mode): the default fine-tuned on LR patches
  # that went through an H.264 intra picture at QP 20-34 (LR PSNR 36-43 dB: what the LR stream gives at 19.2 kbit/s)
  python scripts/recover_run.py edgesr/models/efdn_w16b2_x4_float32.tflite edgesr/models/efdn_w16b2_x4_int8.json \
    runs/efdn_default
  edgesr-convert train --arch efdn --scale 4 --width 16 --blocks 2 --steps 4000 --lr 2e-4 --patch 48 --per-image 32 \
    --val-every 1000 --lr-codec h264:20-34 --init runs/efdn_default/best.weights.h5 \
    --data runs/split/train --val runs/split/holdout --threads 1 --out runs/efdn_w16b2_x4_h264
  cp runs/efdn_w16b2_x4_h264/last.weights.h5 runs/efdn_w16b2_x4_h264/best.weights.h5  # the holdout LR is not coded
  edgesr-convert quantize runs/efdn_w16b2_x4_h264 --dtype int8 --name efdn_w16b2_x4_h264_int8 --data "$DATA" \
    --eval "$VAL/Set5" --eval "$VAL/Set14" --out runs/h264_export
}

efdn_import() {  # session 8: the EFDN authors' trained x4 network (Apache-2.0, third_party/efdn), read without PyTorch
  # and checked against their PyTorch model's output on a Set5 crop; float32 shipped (int8 loses 1.0 dB on Set5)
  edgesr-convert import third_party/efdn/EFDN_gv.pth --out runs/efdn_ntire --reference third_party/efdn/efdn_reference.npz
  edgesr-convert quantize runs/efdn_ntire --dtype float32 --dtype int8 --name efdn_ntire_x4 --data "$DATA" \
    --eval "$VAL/Set5" --eval "$VAL/Set14" --out runs/efdn_ntire_export
  cp runs/efdn_ntire_export/efdn_ntire_x4_float32.{tflite,json} edgesr/models/
}

y_students() {  # session 8: luminance (Y) EDBB students distilled from the imported EFDN (its float32 .tflite run once
  # per training image, outputs cached) on train + T91 (split: every 25th image held out for checkpoint picking);
  # two shapes of about the default's measured time (benchmarks/arch_time.py), trained side by side
  bash "$0" split
  local d=(--teacher runs/efdn_ntire_export/efdn_ntire_x4_float32.tflite --arch efdn --color y --scale 4 --patch 48
           --per-image 32 --val-every 5000 --data runs/split/train --val runs/split/holdout --threads 1 --resume)
  edgesr-convert distill "${d[@]}" --width 16 --blocks 4 --steps 100000 --out runs/y_w16b4_kd &
  edgesr-convert distill "${d[@]}" --width 24 --blocks 2 --steps 60000 --out runs/y_w24b2_kd
  wait
  for r in w16b4 w24b2; do
    edgesr-convert quantize "runs/y_${r}_kd" --dtype float32 --dtype int8 --data "$DATA" --eval runs/split/holdout \
      --eval "$VAL/Set5" --eval "$VAL/Set14" --out runs/y_export
  done
}

stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(realtime baselines teacher ladder export_models table)
for s in "${stages[@]}"; do "$s"; done
