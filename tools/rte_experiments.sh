#!/usr/bin/env bash
# RTE experiments of the VIRT issue (MiniLM default weights). Reuses the teacher in
# runs/rte/teacher (train it first with --model=cross). Sequential; each run is resumable.
# Usage: bash tools/rte_experiments.sh [DATA_DIR] [EPOCHS]
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/rte}
EPOCHS=${2:-3}
T=runs/rte/teacher
run() {  # name, extra flags...
  local name=$1; shift
  [ -f "runs/rte/$name/metrics.json" ] && return 0
  echo "== $(date +%T) $name $*"
  python -m virt_tf.train --task=rte --data_dir="$DATA" --teacher_dir="$T" --epochs="$EPOCHS" \
    --model_dir="runs/rte/$name" --verbose=2 "$@" > "runs/rte/$name.log" 2>&1 \
    || echo "FAILED $name"
  grep -h "accuracy" "runs/rte/$name.log" | tail -1
}
mkdir -p runs/rte
# most informative first: VIRT vs Siamese at seed 0, then the alpha sweep (selection on the
# held-out 10% of train, metrics.json 'tune'), the ablations, more seeds, the released-code form.
run "virt_a1_s0" --model=virt --virt_alpha=1 --seed=0
run "siamese_s0" --model=siamese --seed=0
run "wo_virt_s0" --model=virt --virt_alpha=0 --seed=0
for a in 0.1 10 3; do run "virt_a${a}_s0" --model=virt --virt_alpha=$a --seed=0; done
BEST=$(python - <<'PY'
import json
best = max(((json.load(open(f"runs/rte/virt_a{a}_s0/metrics.json"))["tune"]["accuracy"], a)
            for a in ["0.1", "1", "3", "10"]), key=lambda t: (t[0], -float(t[1])))
print(best[1])
PY
)
echo "best alpha on tune: $BEST"
echo "$BEST" > runs/rte/best_alpha.txt
run "wo_virta_s0" --model=virt --virt_head=simple --virt_alpha=$BEST --seed=0
for s in 1 2; do
  run "siamese_s$s" --model=siamese --seed=$s
  run "virt_a${BEST}_s$s" --model=virt --virt_alpha=$BEST --seed=$s
done
for s in 0 1; do
  run "virt_codeform_s$s" --model=virt --virt_alpha=$BEST --fusion=code --pool_padding --seed=$s
done
# MNLI-intermediate teacher (needs runs/mnli/teacher from tools/mnli_experiments.sh): the RTE
# teacher starts from the MNLI teacher's encoder; then a VIRT student of that stronger teacher.
if [ -f runs/mnli/teacher/model_config.json ]; then
  if [ ! -f runs/rte/teacher_mnli_init/metrics.json ]; then
    python -m virt_tf.train --task=rte --data_dir="$DATA" --model=cross --epochs=4 \
      --init_checkpoint=runs/mnli/teacher --model_dir=runs/rte/teacher_mnli_init --verbose=2 \
      > runs/rte/teacher_mnli_init.log 2>&1 || echo "FAILED teacher_mnli_init"
  fi
  T=runs/rte/teacher_mnli_init run "virt_a${BEST}_tmnli_s0" --model=virt --virt_alpha=$BEST --seed=0
fi
echo "== $(date +%T) done"
