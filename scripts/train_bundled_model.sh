#!/usr/bin/env bash
# Reproduce a bundled pretrained model with the project's own commands.
#   formation-energy (default) -> elemnet_tl/pretrained/mp_eform: ElemNet on Materials Project formation
#     energies (matbench_mp_e_form: 132,752 rows -> 95,118 compositions, lowest energy per composition),
#     Magpie physical attributes also feeding the first layer (--pa), 120 epochs (about 30 minutes on 2 CPU cores).
#   band-gap -> elemnet_tl/pretrained/mp_gap: ElemNet on Materials Project PBE band gaps (matbench_mp_gap:
#     106,113 rows -> 78,164 compositions, duplicates averaged), Magpie attributes also feeding the first
#     layer (--pa), 60 epochs (about 15-30 minutes).
# Both: seeded 10 % test hold-out, 10 % of the rest for validation / early stopping, seed 0.
# Usage: bash scripts/train_bundled_model.sh [formation-energy|band-gap] [RUN_DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
source_dir="${ELEMTL_SHARED:-$here/../shared}/data/source"
which="${1:-formation-energy}"
case "$which" in
  formation-energy) data="$source_dir/matbench_mp_e_form.csv.gz"; folder=mp_eform; target=("formation energy" "eV/atom")
                    options=(--duplicates most-stable --pa) ;;
  band-gap) data="$source_dir/matbench_mp_gap.csv.gz"; folder=mp_gap; target=("band gap" "eV")
            options=(--duplicates mean --epochs 60 --pa) ;;
  *) echo "usage: bash scripts/train_bundled_model.sh [formation-energy|band-gap] [RUN_DIR]"; exit 2 ;;
esac
run="${2:-runs/bundled_$folder}"
[ -f "$data" ] || { echo "skip: $data not found (needs ../shared/data)"; exit 0; }
resume=()
[ -f "$run/train_state.safetensors" ] && resume=(--resume)
elemtl pretrain "$data" -o "$run" --test-fraction 0.1 --seed 0 --device cpu "${options[@]}" "${resume[@]}"
python "$here/scripts/bundle_model.py" "$run" "$here/elemnet_tl/pretrained/$folder" "${target[@]}"
