#!/usr/bin/env bash
# Wall time of `elemtl finetune` with its defaults (--from auto, auto, 3-network ensemble) on the first
# N rows of a JARVIS development training file: the issue's limits are <= 3 min for ~1,500 rows and
# <= 5 min for ~5,000 on 2 CPU cores.
# Usage: bash scripts/bench_finetune_time.sh [SET:ROWS ...]   (default: spillage:1500 mbj_bandgap:5000)
# Needs ../shared/data (skips with a message when absent).
set -euo pipefail
cd "$(dirname "$0")/.."
JARVIS=../shared/data/targets/jarvis_tl
if [ ! -d "$JARVIS" ]; then echo "skip: $JARVIS not found"; exit 0; fi
work=$(mktemp -d)
for item in "${@:-spillage:1500 mbj_bandgap:5000}"; do
  for pair in $item; do
    set="${pair%%:*}"; rows="${pair##*:}"
    (zcat "$JARVIS/$set/train.csv.gz" || true) | head -n $((rows + 1)) > "$work/$set.csv"  # zcat: SIGPIPE
    start=$(date +%s.%N)
    elemtl finetune "$work/$set.csv" -o "$work/run_$set" -q > "$work/$set.log" 2>&1
    end=$(date +%s.%N)
    printf '%s first %s rows: %.0f s; %s\n' "$set" "$rows" "$(echo "$end - $start" | bc)" \
      "$(grep -h '^--from auto\|^strategy' "$work/$set.log" | cut -c1-100 | tr '\n' ' ')"
  done
done
rm -rf "$work"
