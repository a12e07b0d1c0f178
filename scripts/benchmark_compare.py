"""compare-scratch on the JARVIS development sets (the study's splits), the bundled experimental set and
the matbench composition sets of ../shared/data/targets (`--sets matbench_steels_yield,...`: a seeded 20 %
hold-out per seed, as `elemtl compare-scratch FILE` does).

For each set runs `elemtl compare-scratch` (API) with the given seeds and writes a summary table:
best transfer (tl-finetune / tl-features) vs best from scratch (sc-ef, sc-pa, pa-rf), beside the
study's numbers.
Usage: python scripts/benchmark_compare.py [--sets slme,...,expt] [--seeds 3] [--methods ...] [--from auto]
                                          [--out docs/compare_results.json]
Finished method/seed pairs are kept (compare-scratch --resume): e.g. run the from-scratch methods first and
the transfer methods later with another source model.
       python scripts/benchmark_compare.py --table docs/compare_a.json docs/compare_b.json   (markdown table only)
Needs ../shared/data for the JARVIS sets (skips them with a message when absent).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ROOT.parent / "shared" / "data" / "targets"
JARVIS = TARGETS / "jarvis_tl"
SETS = ("piezo_max_dij", "slme", "spillage", "mbj_bandgap", "bulkmoduluskv", "meps", "pseebeck", "magmom_outcar",
        "expt")  # smallest first


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="docs/compare_results.json")
    parser.add_argument("--work", default="runs/compare")
    parser.add_argument("--methods", default=None, help="comma-separated subset (default: all six)")
    parser.add_argument("--from", dest="source", default="auto")
    parser.add_argument("--table", nargs="+", metavar="JSON", help="only print the table of these result files")
    args = parser.parse_args()
    if args.table:
        summary: dict = {}
        for f in args.table:  # files with different methods of the same set are merged
            for name, entry in json.loads(Path(f).read_text()).items():
                merged = summary.setdefault(name, {**entry, "methods": {}})
                merged["methods"].update(entry["methods"])
        print(table(summary))
        return 0
    from elemnet_tl.compare import METHODS, STUDY_TEST_MAE, compare_scratch

    methods = tuple(args.methods.split(",")) if args.methods else METHODS

    out = Path(args.out)
    summary = json.loads(out.read_text()) if out.is_file() else {}
    for name in [s for s in args.sets.split(",") if s]:
        if all(m in summary.get(name, {}).get("methods", {}) for m in methods):
            continue
        t0 = time.perf_counter()
        if name == "expt":
            results = compare_scratch("expt-formation-enthalpy", Path(args.work) / name, seeds=args.seeds,
                                      methods=methods, source=args.source, resume=True, show_progress=False)
        elif name.startswith("matbench_"):
            if not (TARGETS / f"{name}.csv.gz").is_file():
                print(f"skip {name}: {TARGETS / (name + '.csv.gz')} not found")
                continue
            results = compare_scratch(TARGETS / f"{name}.csv.gz", Path(args.work) / name, seeds=args.seeds,
                                      methods=methods, source=args.source, resume=True, show_progress=False)
        else:
            if not JARVIS.is_dir():
                print(f"skip {name}: {JARVIS} not found")
                continue
            results = compare_scratch(JARVIS / name / "train.csv.gz", Path(args.work) / name,
                                      test=JARVIS / name / "test.csv.gz", seeds=args.seeds, methods=methods,
                                      source=args.source, resume=True, show_progress=False)
        def label(m: str) -> str:  # transfer methods from another source get their own column
            return m if args.source == "auto" or not m.startswith("tl-") else f"{m} (--from {args.source})"

        row = {label(m): [v["test_mae_mean"], v["test_mae_std"]] for m, v in results["methods"].items()}
        secs = {label(m): v.get("seconds") for m, v in results["methods"].items()}
        summary[name] = {"methods": {**summary.get(name, {}).get("methods", {}), **row},
                         "method_seconds": {**summary.get(name, {}).get("method_seconds", {}), **secs},
                         "verdict": results["verdict"], "seconds": time.perf_counter() - t0,
                         "study": STUDY_TEST_MAE.get(name), "source": args.source}
        out.write_text(json.dumps(summary, indent=1))
        print(name, json.dumps(summary[name]), flush=True)
    wins = sum(1 for v in summary.values() if v["verdict"].get("transfer_wins"))
    print(f"transfer beats the best from-scratch method on {wins} of {len(summary)} sets")
    return 0


def _cell(row: dict, method: str) -> str:
    if method not in row:
        return "—"
    mean, std = row[method]
    return f"{mean:.4g} ± {std:.2g}" if std else f"{mean:.4g}"


def _best(row: dict, family: tuple[str, ...]) -> float:
    return min((row[m][0] for m in family if m in row), default=float("nan"))


TRANSFER = ("tl-finetune", "tl-features")
SCRATCH = ("sc-ef", "sc-pa", "pa-rf")


def table(summary: dict) -> str:
    """Markdown: test MAE (mean ± std over seeds) of each method, the best of each family, the study's."""
    extra = sorted({m for e in summary.values() for m in e["methods"] if m.startswith("tl-") and m not in TRANSFER})
    methods = [*TRANSFER, *extra, *SCRATCH, "mean"]
    lines = ["| set | " + " | ".join(methods) + " | transfer gain | study scratch | study transfer |",
             "|" + "---|" * (len(methods) + 4)]
    wins = compared = 0
    for name, entry in summary.items():
        row = {m: v for m, v in entry["methods"].items() if v[0] is not None}  # failed runs: null
        tl, sc = _best(row, (*TRANSFER, *extra)), _best(row, SCRATCH)
        wins += bool(tl < sc)
        compared += not (np.isnan(tl) or np.isnan(sc))
        study = entry.get("study") or ("", "", "")
        gain = "—" if np.isnan(tl) or np.isnan(sc) else f"{100 * (sc - tl) / sc:+.1f} %"
        cells = " | ".join(_cell(row, m) for m in methods)
        lines.append(f"| {name} | {cells} | {gain} | {study[1]} | {study[2]} |")
    family = ", ".join([*TRANSFER, *extra])
    lines.append(f"\nTransfer (best of {family}) beats the best from-scratch method on {wins} of {compared} sets "
                 "with both families measured.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
