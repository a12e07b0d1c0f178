"""Transfer benchmark on the eight JARVIS development sets (the study's exact train/test splits).

For each set: `finetune --strategy auto`, optionally every other strategy and extract-features, and
the plain reference recipe (all layers from the pretrained weights, standardized target, Adam 3e-4 at
a constant rate, batch 128, early stopping on 10 % of train, one seed). Test MAE and wall time per
run go to a JSON file and a markdown table beside the study's numbers.

Usage:
  python scripts/benchmark_transfer.py [--sets slme,spillage,...] [--methods auto,reference,full,...]
                                       [--from auto] [--seeds 1] [--out docs/transfer_results.json]
  (methods: any finetune --strategy, e.g. full+pa, plus reference and features)
Needs ../shared/data (skips with a message when absent).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
JARVIS = ROOT.parent / "shared" / "data" / "targets" / "jarvis_tl"
SETS = ("slme", "spillage", "mbj_bandgap", "bulkmoduluskv", "meps", "pseebeck", "magmom_outcar", "piezo_max_dij")
METHODS = ("auto", "reference", "full", "full+pa", "freeze:4", "head", "reinit", "gradual", "features")


def reference(train: Path, test: Path, source: str, seed: int) -> float:
    """The plain recipe: full fine-tune, Adam 3e-4 constant, batch 128, early stopping on 10 % of train."""
    import torch

    from elemnet_tl.checkpoint import load_model
    from elemnet_tl.runs import regression_metrics
    from elemnet_tl.training import FitConfig, fit, predict_tensor, standardize
    from elemnet_tl.workflow import load_training_inputs

    inputs = load_training_inputs(train, test=test, seed=seed)
    x_tr, y_tr, x_va, y_va = inputs.arrays()
    mean, std = standardize(y_tr)
    model = load_model(source).model
    torch.manual_seed(seed)
    model.reset_head()
    cfg = FitConfig(epochs=300, batch_size=128, lr=3e-4, weight_decay=0.0, warmup=0.0, final_lr=1.0, patience=20,
                    seed=seed)

    def t(a):
        return torch.as_tensor(np.asarray(a, dtype=np.float32))

    fit(model, t(x_tr), t((y_tr - mean) / std), t(x_va), t((y_va - mean) / std), cfg, y_scale=std)
    pred = predict_tensor(model, t(inputs.test.fractions)).numpy() * std + mean
    return regression_metrics(inputs.test.target, pred)["mae"]


def run_one(method: str, name: str, source: str, seed: int, work: Path) -> dict:
    train, test = JARVIS / name / "train.csv.gz", JARVIS / name / "test.csv.gz"
    t0 = time.perf_counter()
    info: dict = {}
    result = None
    if method == "reference":
        mae = reference(train, test, "bundled" if source == "auto" else source, seed)  # the plain recipe
    elif method == "features":
        from elemnet_tl.feature_runs import extract_features

        result = extract_features(train, work / f"{name}_features_{seed}", source=source, regressor="auto",
                                  test=test, seed=seed, show_progress=False)
        mae = result.card["metrics"]["test_mae"]
        info = {"layers": result.card.get("layers"), "regressor": result.card.get("regressor", {}).get("name")
                if isinstance(result.card.get("regressor"), dict) else result.card.get("regressor")}
    else:
        from elemnet_tl.finetune import FINETUNE_DEFAULTS, finetune

        result = finetune(train, work / f"{name}_{method.replace(':', '_')}_{seed}", source=source, strategy=method,
                          test=test, config=replace(FINETUNE_DEFAULTS, seed=seed), overwrite=True,
                          show_progress=False)
        mae = result.card["metrics"]["test_mae"]
        info = {"chosen": result.card["strategy"]["name"], "reason": result.card["strategy"]["reason"]}
    if result is not None and "source_choice" in result.card:
        info["source"] = result.card["source_choice"]["name"]
    return {"set": name, "method": method, "seed": seed, "test_mae": mae, "seconds": time.perf_counter() - t0,
            **info}


def table(rows: list[dict], methods: list[str]) -> str:
    from elemnet_tl.compare import STUDY_TEST_MAE

    head = "| set | study scratch | study transfer | " + " | ".join(methods) + " | auto picked |"
    lines = [head, "|" + "---|" * (len(methods) + 4)]
    for name in dict.fromkeys(r["set"] for r in rows):
        base, sc, tl = STUDY_TEST_MAE[name]
        cells = []
        for m in methods:
            vals = [r["test_mae"] for r in rows if r["set"] == name and r["method"] == m and r.get("test_mae")]
            secs = [r["seconds"] for r in rows if r["set"] == name and r["method"] == m]
            if vals:
                mean = float(np.mean(vals))
                std = f" ± {np.std(vals, ddof=1):.2g}" if len(vals) > 1 else ""
                cells.append(f"{mean:.4g}{std} ({np.mean(secs):.0f} s)")
            else:
                cells.append("")
        picked = sorted({r.get("chosen", "") for r in rows if r["set"] == name and r["method"] == "auto"})
        lines.append(f"| {name} | {sc} | {tl} | " + " | ".join(cells) + f" | {', '.join(picked)} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--methods", default="auto,reference")
    parser.add_argument("--from", dest="source", default="auto")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--out", default="docs/transfer_results.json")
    parser.add_argument("--table", nargs="+", metavar="JSON", help="only print the table of these result files")
    args = parser.parse_args()
    if args.table:
        rows = [r for f in args.table for r in json.loads(Path(f).read_text())["rows"]]
        print(table(rows, list(dict.fromkeys(r["method"] for r in rows))))
        return 0
    if not JARVIS.is_dir():
        print(f"skip: {JARVIS} not found (needs ../shared/data)")
        return 0
    sets = [s for s in args.sets.split(",") if s]
    methods = [m for m in args.methods.split(",") if m]
    out = Path(args.out)
    rows = json.loads(out.read_text())["rows"] if out.is_file() else []
    done = {(r["set"], r["method"], r["seed"]) for r in rows}
    work = Path(tempfile.mkdtemp(prefix="elemtl_bench_"))
    for name in sets:
        for method in methods:
            for seed in range(args.seeds):
                if (name, method, seed) in done:
                    continue
                row = run_one(method, name, args.source, seed, work)
                rows.append(row)
                print(json.dumps(row), flush=True)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps({"machine": f"{platform.node()} ({platform.machine()})",
                                           "date": time.strftime("%Y-%m-%d"), "source": args.source,
                                           "rows": rows}, indent=1))
    print(table(rows, list(dict.fromkeys(r["method"] for r in rows))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
