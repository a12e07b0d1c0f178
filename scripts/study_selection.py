"""How should `finetune --strategy auto` pick among its candidates? Data for comparing selection rules.

For each set and seed: train every `auto` candidate once (one network each, no ensemble) from the bundled
model, and record each candidate's per-row absolute errors on the validation split (what `auto` sees)
and its test MAE (what the user gets). Any selection rule can then be scored offline on the same
trainings: `--rules` prints, per rule, the mean test MAE of the candidate it picks, relative to always
taking `full`.

Sets: the JARVIS development sets with their own train/test split, the matbench composition sets and
the bundled experimental formation enthalpies with a seeded 20 % test hold-out per seed (as
compare-scratch makes it); ``NAME@N`` trains on a seeded subsample of N rows (a small set of that
property, where `auto` has the most candidates).

Usage:
  python scripts/study_selection.py --sets piezo_max_dij,slme,matbench_steels_yield --seeds 3 --out study.json
  python scripts/study_selection.py --rules study.json [more.json ...]
Needs ../shared/data for the JARVIS and matbench sets (skips them with a message when absent).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ROOT.parent / "shared" / "data" / "targets"
JARVIS_SETS = ("slme", "spillage", "mbj_bandgap", "bulkmoduluskv", "meps", "pseebeck", "magmom_outcar", "piezo_max_dij")


def split_files(name: str, seed: int, work: Path) -> tuple[Path, Path] | None:
    """(train, test) files of one set and seed, or None when the data are absent. ``NAME@N``: a seeded
    subsample of N rows of the training part (a smaller set of the same property)."""
    import pandas as pd

    from elemnet_tl.featurize import load_and_prepare
    from elemnet_tl.workflow import split_indices

    base, _, size = name.partition("@")
    jarvis = TARGETS / "jarvis_tl" / base
    source = TARGETS / f"{base}.csv.gz" if base.startswith("matbench") else base
    if (base.startswith("matbench") and not Path(source).is_file()) or (
            base in JARVIS_SETS and not jarvis.is_dir()):
        return None

    def table(path: str | Path) -> pd.DataFrame:
        data = load_and_prepare(path)
        return pd.DataFrame({"formula": data.frame["formula"], "target": data.target})

    test_path = work / f"{base}_{seed}_test.csv"
    if jarvis.is_dir():
        train, test_path = table(jarvis / "train.csv.gz"), jarvis / "test.csv.gz"
    else:
        frame = table(source)
        tr, te = split_indices(len(frame), 0.2, 1000 + seed)  # compare-scratch's test hold-out
        train = frame.iloc[tr]
        frame.iloc[te].to_csv(test_path, index=False)
    if size:
        train = train.iloc[np.sort(np.random.default_rng(seed).permutation(len(train))[:int(size)])]
    train_path = work / f"{name}_{seed}_train.csv"
    train.to_csv(train_path, index=False)
    return train_path, test_path


def study_one(name: str, seed: int, work: Path) -> dict | None:
    """Every auto candidate of one set/seed: validation absolute errors per row and test MAE."""
    import torch

    from elemnet_tl.finetune import FINETUNE_DEFAULTS, _finetune, _Options
    from elemnet_tl.model import ElemNet
    from elemnet_tl.training import predict_tensor, standardize
    from elemnet_tl.workflow import load_training_inputs

    files = split_files(name, seed, work)
    if files is None:
        return None
    train, test = files
    config = replace(FINETUNE_DEFAULTS, seed=seed)
    options = _Options(strategy="auto", val=None, test=test, val_fraction=0.1, keep_head=None, members=1,
                       config=config, device="cpu", overwrite=True, duplicates="auto", formula_col=None,
                       target_col=None, stability_col=None, show_progress=False, notices=False)
    t0 = time.perf_counter()
    result = _finetune(train, work / f"run_{name}_{seed}", "bundled", options, start_like="auto")
    seconds = time.perf_counter() - t0
    inputs = load_training_inputs(train, test=test, seed=seed)  # the same split the run used
    x_tr, y_tr, x_va, y_va = inputs.arrays()
    mean, std = standardize(y_tr)
    rows = {}
    for cand, (fit, _, state, _) in result.trained.items():
        net = ElemNet(result.info.arch, attributes=any(k.startswith("attributes.") for k in state))
        net.load_state_dict(state)

        def predict(x: np.ndarray, net: ElemNet = net) -> np.ndarray:
            return predict_tensor(net, torch.as_tensor(net.prepare(x))).numpy() * std + mean

        val_err = np.abs(predict(x_va) - y_va)
        test_err = np.abs(predict(inputs.test.fractions) - inputs.test.target)
        rows[cand] = {"val_mae": float(val_err.mean()), "best_val_mae": fit.best_val_mae,
                      "test_mae": float(test_err.mean()), "val_abs_errors": [round(float(e), 6) for e in val_err],
                      "seconds": round(fit.seconds, 1)}
    return {"set": name, "seed": seed, "n_train": int(len(y_tr)), "n_val": int(len(y_va)),
            "n_test": int(len(inputs.test.target)), "picked": result.card["strategy"]["name"],
            "test_mae_run": result.card["metrics"]["test_mae"], "seconds": round(seconds, 1), "candidates": rows}


def pick(cands: dict, rule: str) -> str:
    """The candidate a rule picks. ``argmin``: lowest validation MAE; ``se:K``: ``full`` unless the
    lowest-validation candidate beats it by more than K paired standard errors of the per-row errors."""
    best = min(cands, key=lambda c: cands[c]["val_mae"])
    if rule == "argmin" or best == "full":
        return best
    if rule == "full":
        return "full"
    k = float(rule.split(":")[1])
    d = np.asarray(cands["full"]["val_abs_errors"]) - np.asarray(cands[best]["val_abs_errors"])
    se = d.std(ddof=1) / np.sqrt(len(d))
    return best if d.mean() > k * se else "full"


def rules_table(results: list[dict], rules: list[str]) -> str:
    """Per set: mean test MAE of each rule's pick relative to always `full` (%), and the picks."""
    lines = ["| set | seeds | " + " | ".join(rules) + " |", "|---" * (len(rules) + 2) + "|"]
    by_set: dict[str, list[dict]] = {}
    for r in results:
        by_set.setdefault(r["set"], []).append(r)
    overall = {rule: [] for rule in rules}
    for name, rs in by_set.items():
        cells = []
        for rule in rules:
            rel = [r["candidates"][pick(r["candidates"], rule)]["test_mae"] / r["candidates"]["full"]["test_mae"] - 1
                   for r in rs]
            overall[rule].append(float(np.mean(rel)))
            picks = ",".join(pick(r["candidates"], rule) for r in rs)
            cells.append(f"{100 * np.mean(rel):+.1f} % ({picks})")
        lines.append(f"| {name} | {len(rs)} | " + " | ".join(cells) + " |")
    lines.append("| mean over sets | | " + " | ".join(f"{100 * np.mean(v):+.2f} %" for v in overall.values()) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="piezo_max_dij,slme,matbench_steels_yield,matbench_jdft2d")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--out", default="study_selection.json")
    parser.add_argument("--rules", nargs="+", metavar="JSON", help="only score selection rules on these results")
    args = parser.parse_args()
    if args.rules:
        results = [r for f in args.rules for r in json.loads(Path(f).read_text())]
        print(rules_table(results, ["argmin", "se:0.5", "se:1", "se:1.5", "se:2", "full"]))
        return 0
    work = Path(tempfile.mkdtemp(prefix="elemtl_selection_"))
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else []
    done = {(r["set"], r["seed"]) for r in results}
    for name in args.sets.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            if (name, seed) in done:
                continue
            row = study_one(name, seed, work)
            if row is None:
                print(f"skipped {name}: ../shared/data is absent", file=sys.stderr)
                break
            results.append(row)
            out.write_text(json.dumps(results))
            brief = {c: (round(v["val_mae"], 4), round(v["test_mae"], 4)) for c, v in row["candidates"].items()}
            print(json.dumps({"set": name, "seed": seed, "picked": row["picked"], "val/test": brief}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
