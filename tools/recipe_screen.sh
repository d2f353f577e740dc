#!/usr/bin/env bash
# The screen of distillation levers on the MNLI sample (seed 0 unless a line says), with the
# protocol of the sample grid: first 10k training pairs after the tune hold-out, 2 epochs of
# the gold pairs, best tune epoch kept, lr 5e-5, full dev-matched, the teacher of
# results/sample (all 17.7k training pairs less the tune split, 5 epochs, best tune).
# The runs are the lines of the screen list (NAME DIR FLAGS... [# VERDICT]; default
# configs/screens/mnli_recipe.txt), taken in order; the list is re-read after every run, so
# it can be edited while this runs. A finished run (metrics.json) is reused only when it
# trained with the options its line asks (virt_tf.reproduction.screen.check_finished_lines,
# the check of a resume and of the grid): otherwise the screen stops with one error line
# naming the line and each differing setting. An interrupted run resumes: rerun the same
# command. Usage: bash tools/recipe_screen.sh [DATA_DIR] [TEACHER_DIR] [LIST]
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/bench/mnli}
T=${2:-results/sample/runs/mnli/teacher/lr5e-5_s0}
LIST=${3:-configs/screens/mnli_recipe.txt}
common=(--task=mnli --data_dir="$DATA" --epochs=2 --max_train_examples=10000
        --select_epoch=best_tune --learning_rate=5e-05 --verbose=2)
check_finished() {  # every finished run ran what its line asks, or one error line and exit 2
  python3 -c 'import sys
from virt_tf.cli.common import run_cli
from virt_tf.reproduction.screen import check_finished_lines
run_cli(lambda: check_finished_lines(sys.argv[1], sys.argv[2:]))' "$LIST" "${common[@]}"
}
check_finished || exit 2
if [ ! -f "$T/metrics.json" ]; then
  echo "== $(date +%T) teacher -> $T"
  mkdir -p "$T"
  python3 -m virt_tf.train --task=mnli --data_dir="$DATA" --model=cross --epochs=5 \
    --select_epoch=best_tune --seed=0 --learning_rate=5e-05 --verbose=2 --model_dir="$T" \
    >> "$T.log" 2>&1 || { echo "FAILED teacher"; exit 1; }
fi
next_run() {  # the first line whose run has not finished and did not fail this time
  sed 's/#.*//' "$LIST" | grep -v '^\s*$' | while read -r name dir flags; do
    [ -f "$dir/metrics.json" ] || [ -n "${failed[$name]:-}" ] || { echo "$name $dir $flags"; break; }
  done
}
declare -A failed=()
while check_finished || exit 2; line=$(next_run) && [ -n "$line" ]; do
  read -r name dir flags <<< "$line"
  echo "== $(date +%T) $name: $flags"
  mkdir -p "$(dirname "$dir")"
  # shellcheck disable=SC2086
  if python3 -m virt_tf.train "${common[@]}" --teacher_dir="$T" --model_dir="$dir" $flags \
      >> "$dir.log" 2>&1; then
    grep -h "accuracy" "$dir.log" | tail -1
  else
    echo "FAILED $name (see $dir.log)"; failed[$name]=1
  fi
done
echo "== $(date +%T) done"
