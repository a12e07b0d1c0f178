#!/usr/bin/env bash
# Pretraining recipes for the bundled formation-energy model, side by side (on a GPU all at once), each a plain
# `elemtl pretrain` on the bundled split (Materials Project formation energy, lowest per composition, seeded
# 10 % test, seed 0, Magpie attributes into fc1 as the bundled model):
#   pa120 (the bundled recipe), pa240 / pa480 (longer, no early stop), pa240_b1024 (batch 1024, lr 2e-3),
#   pa240_do (dropout 0.1), oqmd -> mp (120 epochs on OQMD without the MP test compositions, then
#   `--init` on MP: 120 epochs at 1e-3 or 60 at 3e-4);
# then the 5-fold CV on the experimental enthalpies (scripts/benchmark_expt.py) from the bundled model, from
# pa480 and from oqmd -> mp, and a summary (OUT/summary.txt).
# SET=short instead: pa60, pa90 (shorter schedules; expt CV from pa90), pa120 at lr 5e-4 or 2e-3, batch 256,
#   weight decay 0.1. SET=shorter: pa40, pa60 at lr 5e-4 / batch 256 / batch 1024, pa90 at lr 5e-4.
# Usage: [SET=long|short|shorter] bash scripts/sweep_pretrain.sh OUT_DIR DEVICE DATA_DIR DEADLINE_S
#   DATA_DIR holds matbench_mp_e_form.csv.gz, oqmd_minus_mptest.csv.gz (OQMD without the compositions of the
#   bundled model's test split) and expt.csv.gz (formula,target of expt-formation-enthalpy), as written by
#   `python scripts/make_sweep_data.py DATA_DIR`.
set -uo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
out=$1 device=$2 data=$3 deadline=$4
mkdir -p "$out"
elemtl=(python -m elemnet_tl.cli)
split=(--test-fraction 0.1 --seed 0 --device "$device" --pa --quiet)
mp="$data/matbench_mp_e_form.csv.gz"
left() { echo $((deadline - SECONDS)); }
job() {  # job NAME COMMAND...: run under what is left of the deadline, log to OUT/NAME.log
    local name=$1; shift
    local t0=$SECONDS
    timeout "$(left)" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    echo "$name: exit $rc in $((SECONDS - t0)) s" | tee -a "$out/steps.txt"
    return $rc
}
pre() { local name=$1; shift; job "$name" "${elemtl[@]}" pretrain "$mp" -o "$out/$name" "${split[@]}" "$@"; }
expt() { job "expt_$1" python "$here/scripts/benchmark_expt.py" --from "$2" --data "$data/expt.csv.gz" \
           --out "$out/expt_$1.json"; }

if [ "${SET:-long}" = shorter ]; then
    pre pa40 --epochs 40 &
    pre pa60_lr5e-4 --epochs 60 --lr 5e-4 &
    pre pa90_lr5e-4 --epochs 90 --lr 5e-4 &
    pre pa60_b256 --epochs 60 --batch-size 256 &
    pre pa60_b1024 --epochs 60 --batch-size 1024 &
elif [ "${SET:-long}" = short ]; then
    pre pa60 --epochs 60 &
    (pre pa90 --epochs 90 && expt pa90 "$out/pa90") &
    pre pa120_lr5e-4 --lr 5e-4 &
    pre pa120_lr2e-3 --lr 2e-3 &
    pre pa120_b256 --batch-size 256 &
    pre pa120_wd0.1 --weight-decay 0.1 &
else
    expt bundled bundled &
    pre pa120 &
    (pre pa480 --epochs 480 --patience 0 && expt pa480 "$out/pa480") &
    pre pa240 --epochs 240 --patience 0 &
    pre pa240_b1024 --epochs 240 --patience 0 --batch-size 1024 --lr 2e-3 &
    pre pa240_do --epochs 240 --patience 0 --dropout 0.1 &
    (job oqmd "${elemtl[@]}" pretrain "$data/oqmd_minus_mptest.csv.gz" -o "$out/oqmd" --seed 0 --device "$device" \
         --pa --quiet || exit
     { pre oqmd_mp --init "$out/oqmd" && expt oqmd_mp "$out/oqmd_mp"; } &
     pre oqmd_mp60 --init "$out/oqmd" --epochs 60 --lr 3e-4
     wait) &
fi
wait
python - "$out" <<'PY' | tee "$out/summary.txt"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for card in sorted(out.glob("*/card.json")):
    c = json.loads(card.read_text()); t = c["training"]; m = c["metrics"]
    print(f"{card.parent.name:14s} best {t['best_epoch']:3d}/{t['epochs_run']:3d}  val {m['val_mae']:.4f}  "
          f"test {m.get('test_mae') or float('nan'):.4f}  {t['wall_seconds']:.0f} s")
for f in sorted(out.glob("expt_*.json")):
    s = json.loads(f.read_text())
    print(f"{f.stem:14s} {s['mae_mean']:.4f} ± {s['mae_std']:.4f}  " + " ".join(f"{r['test_mae']:.4f}" for r in s["rows"]))
PY
