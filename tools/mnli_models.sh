#!/usr/bin/env bash
# Every model of the registry on the MNLI sample, each with and without VIRT (Tables 1 and 3),
# with the protocol of the earlier MNLI runs: first 10k training pairs after the tuning
# hold-out, 2 epochs, seed 0, the full dev-matched set, the 10k/2-epoch MNLI teacher.
# Finished runs are skipped and an interrupted one resumes: rerun the same command.
# Usage: bash tools/mnli_models.sh [DATA_DIR] [TEACHER_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/bench/mnli}
T=${2:-runs/mnli/teacher}
common=(--task=mnli --data_dir="$DATA" --epochs=2 --max_train_examples=10000 --seed=0
        --verbose=2 --teacher_dir="$T")
run() {
  local name=$1; shift
  [ -f "runs/mnli_models/$name/metrics.json" ] && return 0
  echo "== $(date +%T) $name $*"
  python3 -m virt_tf.train "${common[@]}" --model_dir="runs/mnli_models/$name" "$@" \
    >> "runs/mnli_models/$name.log" 2>&1 || echo "FAILED $name"
  grep -h "accuracy" "runs/mnli_models/$name.log" | tail -1
}
mkdir -p runs/mnli_models
[ -f "$T/metrics.json" ] || python3 -m virt_tf.train --task=mnli --data_dir="$DATA" --epochs=2 \
  --max_train_examples=10000 --seed=0 --verbose=2 --model=cross --model_dir="$T"
run siamese --model=siamese
run siamese_virt --model=siamese --virt_alpha=1
run siamese_concat --model=siamese --fusion=concat
run siamese_concat_virt --model=siamese --fusion=concat --virt_alpha=1
run virt --model=virt --virt_alpha=1
run deformer --model=deformer
run deformer_virt --model=deformer --virt_alpha=1
run dipair --model=dipair
run dipair_virt --model=dipair --virt_alpha=1
run poly --model=poly
run poly_virt --model=poly --virt_alpha=1
run dse --model=dse
# Beyond the paper's tables: DSE's logit distillation with L_virt beside it.
run dse_virt --model=dse --virt_alpha=1
echo "== $(date +%T) done"
