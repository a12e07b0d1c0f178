"""Sweep fine-tuning options (learning rate, step budget, ...) over several small sets and seeds.

For each set, seed and grid point: `finetune --strategy S` from the bundled model with the point's
`FitConfig` fields (the rest: the defaults), its validation MAE (what the run sees) and test MAE (what
the user gets). Sets and splits as in `study_selection.py` (JARVIS sets with their own test split,
matbench sets and the experimental enthalpies with compare-scratch's seeded 20 % hold-out, ``NAME@N`` a
seeded N-row subsample of the training part).

The table gives, per set, the test MAE of each point relative to the first point of the grid (mean over
seeds, %), the same for the validation MAE, and "pick": the point with the lowest validation MAE per
set and seed (what a validated choice of the option would get).

Usage:
  python scripts/sweep_finetune.py --sets piezo_max_dij,slme@1000 --seeds 0,1,2 --grid lr=3e-4,1e-4,1e-3 \
      --out sweep.json
  python scripts/sweep_finetune.py --table sweep.json
Needs ../shared/data (skips sets whose files are absent, with a message).
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from study_selection import split_files  # scripts/ is on the path when this script runs


def parse_grid(specs: list[str]) -> list[dict]:
    """``["lr=3e-4,1e-4", "epochs=0,60"]`` -> the product of the values, first values first."""
    axes = []
    for spec in specs:
        field, _, values = spec.partition("=")
        axes.append([(field, float(v) if field in ("lr", "weight_decay", "warmup", "final_lr") else int(v))
                     for v in values.split(",")])
    return [dict(point) for point in itertools.product(*axes)]


def label(point: dict) -> str:
    return " ".join(f"{k}={v:g}" for k, v in point.items())


def run_point(train: Path, test: Path, work: Path, strategy: str, members: int, seed: int, point: dict,
              source: str = "auto") -> dict:
    from elemnet_tl.finetune import FINETUNE_DEFAULTS, finetune

    run_dir = work / "run"
    t0 = time.perf_counter()
    run = finetune(train, run_dir, source=source, strategy=strategy, test=test, members=members,
                   config=replace(FINETUNE_DEFAULTS, seed=seed, **point), overwrite=True, show_progress=False)
    metrics = run.card["metrics"]
    out = {"val_mae": metrics["val_mae"], "test_mae": metrics["test_mae"],
           "seconds": round(time.perf_counter() - t0, 1), "source": run.card["source_model"]["source"]}
    shutil.rmtree(run_dir, ignore_errors=True)
    return out


def table(results: list[dict]) -> str:
    """Markdown: per set, test and validation MAE of each grid point relative to the first (%)."""
    points = list(dict.fromkeys(r["point"] for r in results))
    sets = list(dict.fromkeys(r["set"] for r in results))
    head = " | ".join(f"{p} (test / val)" for p in points[1:])
    lines = [f"| set | seeds | {points[0]} test MAE | {head} | pick by validation (test) |",
             "|" + "---|" * (len(points) + 3)]
    overall: dict[str, list[float]] = {p: [] for p in [*points[1:], "pick"]}
    for name in sets:
        rows = {(r["seed"], r["point"]): r for r in results if r["set"] == name}
        seeds = sorted({s for s, p in rows if all((s, q) in rows for q in points)})
        if not seeds:
            continue
        base = [rows[(s, points[0])]["test_mae"] for s in seeds]
        cells = []
        for p in points[1:]:
            t = np.mean([rows[(s, p)]["test_mae"] / rows[(s, points[0])]["test_mae"] - 1 for s in seeds])
            v = np.mean([rows[(s, p)]["val_mae"] / rows[(s, points[0])]["val_mae"] - 1 for s in seeds])
            overall[p].append(t)
            cells.append(f"{100 * t:+.1f} / {100 * v:+.1f}")
        pick = np.mean([min((rows[(s, p)] for p in points), key=lambda r: r["val_mae"])["test_mae"]
                        / rows[(s, points[0])]["test_mae"] - 1 for s in seeds])
        overall["pick"].append(pick)
        lines.append(f"| {name} | {len(seeds)} | {np.mean(base):.4g} | {' | '.join(cells)} | {100 * pick:+.1f} |")
    means = " | ".join(f"**{100 * np.mean(overall[p]):+.1f}**" for p in points[1:])
    lines.append(f"| **mean over sets** | | | {means} | **{100 * np.mean(overall['pick']):+.1f}** |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="piezo_max_dij,matbench_jdft2d,slme@1000,expt-formation-enthalpy@1000")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--grid", nargs="+", default=["lr=3e-4,1e-4,1e-3"],
                        help="FIELD=V1,V2,... (FitConfig fields; the first value of each is the reference)")
    parser.add_argument("--strategy", default="full")
    parser.add_argument("--from", dest="source", default="auto", help="source model (default: auto, as finetune)")
    parser.add_argument("--members", type=int, default=1, help="networks per run (1: no ensemble)")
    parser.add_argument("--out", default="sweep_finetune.json")
    parser.add_argument("--table", nargs="+", metavar="JSON", help="only print the table of these result files")
    args = parser.parse_args()
    if args.table:
        print(table([r for f in args.table for r in json.loads(Path(f).read_text())]))
        return 0
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else []
    done = {(r["set"], r["seed"], r["point"]) for r in results}
    points = parse_grid(args.grid)
    with tempfile.TemporaryDirectory(prefix="sweep_finetune_") as tmp:
        work = Path(tmp)
        for name in [s for s in args.sets.split(",") if s]:
            for seed in [int(s) for s in args.seeds.split(",")]:
                files = split_files(name, seed, work)
                if files is None:
                    print(f"skip {name}: its data are not in ../shared/data")
                    break
                for point in points:
                    if (name, seed, label(point)) in done:
                        continue
                    row = run_point(*files, work, args.strategy, args.members, seed, point, args.source)
                    results.append({"set": name, "seed": seed, "point": label(point), **row})
                    out.write_text(json.dumps(results, indent=1))
                    print(json.dumps(results[-1]), flush=True)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
