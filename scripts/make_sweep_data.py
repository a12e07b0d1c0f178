"""Write the data folder of scripts/sweep_pretrain.sh (for a machine without ../shared, e.g. a GPU one).

OUT_DIR gets matbench_mp_e_form.csv.gz (a copy), oqmd_minus_mptest.csv.gz (the OQMD set without the
compositions of the bundled model's test split, which the same code draws again: seeded 10 %, seed 0)
and expt.csv.gz (formula,target of the bundled expt-formation-enthalpy).
Usage: python scripts/make_sweep_data.py OUT_DIR
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "source"


def main() -> int:
    from elemnet_tl.compositions import parse_formulas
    from elemnet_tl.featurize import load_and_prepare
    from elemnet_tl.workflow import load_training_inputs

    out = Path(sys.argv[1])
    mp, oqmd = SOURCE / "matbench_mp_e_form.csv.gz", SOURCE / "oqmd_formation_enthalpy_part.csv.gz"
    if not mp.exists():
        print(f"skip: {mp} not found (needs ../shared/data)")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(mp, out / mp.name)
    test = load_training_inputs(mp, test_fraction=0.1, seed=0, duplicates="most-stable").test.fractions
    held_out = {tuple(np.round(row.astype(np.float64), 4)) for row in test}  # float32 fractions
    frame = pd.read_csv(oqmd)
    keys = [tuple(np.round(row, 4)) for row in parse_formulas(frame["formula"]).fractions]
    keep = np.array([k not in held_out for k in keys])
    frame[keep].to_csv(out / "oqmd_minus_mptest.csv.gz", index=False)
    expt = load_and_prepare("expt-formation-enthalpy")
    pd.DataFrame({"formula": expt.frame["formula"], "target": expt.target}).to_csv(out / "expt.csv.gz", index=False)
    print(f"{out}: {len(test)} test compositions; OQMD {len(frame)} -> {int(keep.sum())} rows; expt {len(expt.target)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
