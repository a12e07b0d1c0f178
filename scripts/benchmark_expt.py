"""5-fold cross-validated MAE on the bundled experimental formation enthalpies (eV/atom).

Each fold: `finetune` (default strategy auto, from the bundled model) on 4/5 of the compositions,
test on the other 1/5. Prints per-fold and mean ± std MAE and writes docs/expt_cv.json.
Usage: python scripts/benchmark_expt.py [--strategy auto] [--folds 5] [--from auto] [--data FILE]
Runs offline: the data ship with pymatgen (--data: the same rows as a formula,target CSV, for a machine whose
pymatgen lacks the file).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def fold_files(work: Path, n_folds: int = 5, data: str = "expt-formation-enthalpy") -> list[tuple[Path, Path]]:
    """(train, test) CSV files of each fold in ``work``: one seeded permutation of the prepared rows."""
    from elemnet_tl.featurize import load_and_prepare

    prepared = load_and_prepare(data)
    frame = pd.DataFrame({"formula": prepared.frame["formula"], "target": prepared.target})
    folds = np.random.default_rng(0).permutation(len(frame)) % n_folds
    files = []
    for k in range(n_folds):
        train, test = work / f"train{k}.csv", work / f"test{k}.csv"
        frame[folds != k].to_csv(train, index=False)
        frame[folds == k].to_csv(test, index=False)
        files.append((train, test))
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="auto")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--from", dest="source", default="auto")
    parser.add_argument("--out", default="docs/expt_cv.json")
    parser.add_argument("--data", default="expt-formation-enthalpy")
    args = parser.parse_args()
    from elemnet_tl.finetune import finetune

    work = Path(tempfile.mkdtemp(prefix="elemtl_expt_"))
    rows = []
    files = fold_files(work, args.folds, args.data)
    for k, (train, test) in enumerate(files):
        t0 = time.perf_counter()
        result = finetune(train, work / f"run{k}", source=args.source, strategy=args.strategy, test=test,
                          duplicates="keep", show_progress=False)
        rows.append({"fold": k, "test_mae": result.card["metrics"]["test_mae"], "seconds": time.perf_counter() - t0,
                     "strategy": result.card["strategy"]["name"]})
        print(json.dumps(rows[-1]), flush=True)
    maes = np.array([r["test_mae"] for r in rows])
    summary = {"dataset": args.data, "n": sum(len(pd.read_csv(test)) for _, test in files), "folds": args.folds,
               "strategy": args.strategy, "source": args.source, "mae_mean": float(maes.mean()),
               "mae_std": float(maes.std(ddof=1)), "rows": rows, "date": time.strftime("%Y-%m-%d")}
    print(f"{args.folds}-fold CV MAE: {maes.mean():.4f} ± {maes.std(ddof=1):.4f} eV/atom")
    Path(args.out).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
