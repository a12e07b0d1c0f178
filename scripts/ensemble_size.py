"""Test MAE against the number of fine-tuned networks averaged (`finetune --ensemble N`).

Runs the default `finetune` once per set with `--ensemble MAX` and scores the mean of the first k members
for k = 1..MAX on the test rows (member k is the same network whatever MAX is, so one run gives the whole
curve). Sets: `expt` (the bundled experimental formation enthalpies, the 5 folds of
scripts/benchmark_expt.py) and JARVIS development sets by name (the study's train/test split).

Usage: python scripts/ensemble_size.py [--sets expt,slme,...] [--max 7] [--splits 0,2] [--out ensemble_size.json]
JARVIS sets need ../shared/data (skipped with a message when absent).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
JARVIS = ROOT.parent / "shared" / "data" / "targets" / "jarvis_tl"


def member_curve(run_dir: Path, test: Path) -> list[float]:
    """Test MAE of the mean of the first k members of the run's ensemble, k = 1..members."""
    import torch

    from elemnet_tl.checkpoint import load_model
    from elemnet_tl.featurize import load_and_prepare
    from elemnet_tl.model import ElemNetEnsemble

    loaded = load_model(run_dir)
    model = loaded.model if isinstance(loaded.model, ElemNetEnsemble) else ElemNetEnsemble([loaded.model])
    test_rows = load_and_prepare(test, duplicates="keep")  # as finetune reads a --test file
    with torch.no_grad():
        x = torch.as_tensor(model.prepare(test_rows.fractions), dtype=torch.float32)
        preds = model.eval().member_outputs(x).numpy() * loaded.info.target_std + loaded.info.target_mean
    cum = np.cumsum(preds, axis=0) / np.arange(1, len(preds) + 1)[:, None]
    return [float(np.abs(c - test_rows.target).mean()) for c in cum]


def splits(name: str, work: Path) -> list[tuple[str, Path, Path]]:
    """(label, train file, test file) of a set: five CV folds for `expt`, the study's split otherwise."""
    if name != "expt":
        return [(name, JARVIS / name / "train.csv.gz", JARVIS / name / "test.csv.gz")]
    from benchmark_expt import fold_files  # the folds of scripts/benchmark_expt.py (this folder is on sys.path)

    return [(f"expt fold {k}", train, test) for k, (train, test) in enumerate(fold_files(work))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="expt")
    parser.add_argument("--max", type=int, default=7, help="members of the largest ensemble")
    parser.add_argument("--out", default="ensemble_size.json")
    parser.add_argument("--splits", default="", help="only these splits of each set, by index (e.g. 2 or 0,3)")
    args = parser.parse_args()
    from elemnet_tl.finetune import finetune

    work = Path(tempfile.mkdtemp(prefix="elemtl_ens_"))
    rows = []
    for name in args.sets.split(","):
        if name != "expt" and not (JARVIS / name).is_dir():
            print(f"skipped {name}: {JARVIS / name} not found", flush=True)
            continue
        chosen = {int(i) for i in args.splits.split(",") if i}
        for label, train, test in [s for i, s in enumerate(splits(name, work)) if not chosen or i in chosen]:
            t0 = time.perf_counter()
            run = finetune(train, work / label.replace(" ", "_"), test=test, members=args.max,
                           duplicates="keep" if name == "expt" else "auto", show_progress=False)
            curve = member_curve(run.run_dir, test)
            if abs(curve[-1] - run.card["metrics"]["test_mae"]) > 1e-5:
                raise SystemExit(f"{label}: the members' mean {curve[-1]} is not the run's test MAE")
            rows.append({"set": name, "split": label, "strategy": run.card["strategy"]["name"],
                         "curve": curve, "seconds": round(time.perf_counter() - t0, 1)})
            print(json.dumps(rows[-1]), flush=True)
            Path(args.out).write_text(json.dumps({"max": args.max, "rows": rows, "date": time.strftime("%Y-%m-%d")},
                                                 indent=1))
    for name in dict.fromkeys(r["set"] for r in rows):
        curves = np.array([r["curve"] for r in rows if r["set"] == name])
        mean = curves.mean(0)
        print(f"{name}: " + ", ".join(f"k={k + 1} {m:.4g}" for k, m in enumerate(mean))
              + " (relative to k=1: " + ", ".join(f"{m / mean[0] - 1:+.1%}" for m in mean) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
