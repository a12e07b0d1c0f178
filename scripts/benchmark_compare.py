"""compare-scratch on the JARVIS development sets (the study's splits) and the bundled experimental set.

For each set runs `elemtl compare-scratch` (API) with the given seeds and writes a summary table:
best transfer (tl-finetune / tl-features) vs best from scratch (sc-ef, sc-pa, pa-rf), beside the
study's numbers.
Usage: python scripts/benchmark_compare.py [--sets slme,...,expt] [--seeds 3] [--out docs/compare_results.json]
Needs ../shared/data for the JARVIS sets (skips them with a message when absent).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JARVIS = ROOT.parent / "shared" / "data" / "targets" / "jarvis_tl"
SETS = ("slme", "spillage", "mbj_bandgap", "bulkmoduluskv", "meps", "pseebeck", "magmom_outcar", "piezo_max_dij",
        "expt")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="docs/compare_results.json")
    parser.add_argument("--work", default="runs/compare")
    args = parser.parse_args()
    from elemnet_tl.compare import STUDY_TEST_MAE, compare_scratch

    out = Path(args.out)
    summary = json.loads(out.read_text()) if out.is_file() else {}
    for name in [s for s in args.sets.split(",") if s]:
        if name in summary:
            continue
        t0 = time.perf_counter()
        if name == "expt":
            results = compare_scratch("expt-formation-enthalpy", Path(args.work) / name, seeds=args.seeds,
                                      resume=True, show_progress=False)
        else:
            if not JARVIS.is_dir():
                print(f"skip {name}: {JARVIS} not found")
                continue
            results = compare_scratch(JARVIS / name / "train.csv.gz", Path(args.work) / name,
                                      test=JARVIS / name / "test.csv.gz", seeds=args.seeds, resume=True,
                                      show_progress=False)
        row = {m: [v["test_mae_mean"], v["test_mae_std"]] for m, v in results["methods"].items()}
        summary[name] = {"methods": row, "verdict": results["verdict"], "seconds": time.perf_counter() - t0,
                         "study": STUDY_TEST_MAE.get(name)}
        out.write_text(json.dumps(summary, indent=1))
        print(name, json.dumps(summary[name]), flush=True)
    wins = sum(1 for v in summary.values() if v["verdict"].get("transfer_wins"))
    print(f"transfer beats the best from-scratch method on {wins} of {len(summary)} sets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
