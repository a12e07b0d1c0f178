#!/usr/bin/env bash
# Reproduce the bundled pretrained model (elemnet_tl/pretrained/mp_eform) with the project's own commands.
# ElemNet on Materials Project formation energies (matbench_mp_e_form: 132,752 rows -> 95,118 compositions,
# lowest energy per composition), seeded 10 % test hold-out, 10 % of the rest for validation / early stopping.
# Usage: bash scripts/train_bundled_model.sh [RUN_DIR]   (about 30-60 minutes on 2 CPU cores)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
data="${ELEMTL_SHARED:-$here/../shared}/data/source/matbench_mp_e_form.csv.gz"
run="${1:-runs/bundled_mp_eform}"
[ -f "$data" ] || { echo "skip: $data not found (needs ../shared/data)"; exit 0; }
resume=""
[ -f "$run/train_state.safetensors" ] && resume="--resume"
elemtl pretrain "$data" -o "$run" --test-fraction 0.1 --seed 0 --device cpu $resume
python "$here/scripts/bundle_model.py" "$run" "$here/elemnet_tl/pretrained/mp_eform"
