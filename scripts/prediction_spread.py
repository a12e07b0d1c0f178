"""How far `predict`'s reliability columns can be trusted: the ensemble spread and unseen elements.

For each set: `finetune` with every default (auto, 3-network ensemble, `--from auto`) on the training
part, then `predict` on the test part (JARVIS sets: the study's split; matbench sets and the
experimental enthalpies: compare-scratch's seeded 20 % hold-out). Per set: test MAE; Spearman's rank
correlation of `ensemble_std` with the absolute error; MAE of the half of the test rows with the smaller
spread and of the other half; the share of errors within one and two spreads (a calibrated Gaussian
error bar would give 68 % and 95 %); rows with an element the fine-tune never trained on.

Usage:
  python scripts/prediction_spread.py --sets piezo_max_dij,slme,matbench_jdft2d --out spread.json
  python scripts/prediction_spread.py --table spread.json
Needs ../shared/data (skips sets whose files are absent, with a message).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

DEFAULT_SETS = ("piezo_max_dij,matbench_steels_yield,matbench_jdft2d,matbench_phonons,expt-formation-enthalpy,"
                "slme,spillage")


def spread_stats(std: np.ndarray, err: np.ndarray) -> dict:
    """Rank correlation of spread and absolute error, MAE by spread half, share within one/two spreads."""
    from scipy.stats import spearmanr

    low = std <= np.median(std)
    if low.all():  # more than half the spreads tied: split by rank instead, so neither half is empty
        low = np.zeros(len(std), dtype=bool)
        low[np.argsort(std, kind="stable")[:len(std) // 2]] = True
    return {"n": int(len(err)), "mae": float(err.mean()), "spearman": float(spearmanr(std, err).correlation),
            "mae_low_half": float(err[low].mean()), "mae_high_half": float(err[~low].mean()),
            "within_1": float(np.mean(err <= std)), "within_2": float(np.mean(err <= 2 * std))}


def run_set(name: str, seed: int, work: Path) -> dict | None:
    from study_selection import split_files  # scripts/ is on the path when this script runs

    from elemnet_tl.finetune import FINETUNE_DEFAULTS, finetune
    from elemnet_tl.predict import predict

    files = split_files(name, seed, work)
    if files is None:
        print(f"{name}: data absent, skipped", file=sys.stderr)
        return None
    train, test = files
    t0 = time.perf_counter()
    run = finetune(train, work / "run", config=replace(FINETUNE_DEFAULTS, seed=seed), overwrite=True,
                   show_progress=False)
    table = predict(test, run.run_dir, device="cpu").table
    ok = table["error"].notna().to_numpy()
    err = table["error"].abs().to_numpy()[ok]
    row = {"set": name, "seed": seed, "strategy": run.card["strategy"]["name"],
           **spread_stats(table["ensemble_std"].to_numpy()[ok], err)}
    unseen = table["unseen_elements"].fillna("").astype(str).to_numpy()[ok] != ""
    row.update(unseen_rows=int(unseen.sum()), unseen_mae=float(err[unseen].mean()) if unseen.any() else None,
               seconds=round(time.perf_counter() - t0, 1))
    return row


def print_table(rows: list[dict]) -> None:
    print("| set | test rows | test MAE | Spearman (spread, error) | MAE, smaller-spread half | larger-spread half "
          "| ratio | within 1 / 2 spreads | rows with unseen elements (their MAE) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        unseen = f"{r['unseen_rows']}" + (f" ({r['unseen_mae']:.4g})" if r["unseen_rows"] else "")
        print(f"| {r['set']} | {r['n']} | {r['mae']:.4g} | {r['spearman']:.2f} | {r['mae_low_half']:.4g} | "
              f"{r['mae_high_half']:.4g} | {r['mae_high_half'] / r['mae_low_half']:.1f}x | "
              f"{100 * r['within_1']:.0f} % / {100 * r['within_2']:.0f} % | {unseen} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=DEFAULT_SETS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="prediction_spread.json")
    parser.add_argument("--table", nargs="+", metavar="JSON", help="only print the table of these result files")
    args = parser.parse_args()
    if args.table:
        print_table([row for path in args.table for row in json.loads(Path(path).read_text())])
        return 0
    work = Path(tempfile.mkdtemp(prefix="elemtl_spread_"))
    rows = []
    try:
        for name in args.sets.split(","):
            row = run_set(name, args.seed, work)
            if row is not None:
                rows.append(row)
                print(json.dumps(row), flush=True)
                Path(args.out).write_text(json.dumps(rows, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
