"""How should `finetune --strategy auto` pick among its candidates? Data for comparing selection rules.

For each set and seed: train every `auto` candidate once (one network each, no ensemble) from the bundled
model, and record each candidate's per-row absolute errors on the validation split (what `auto` sees)
and its test MAE (what the user gets). Any selection rule can then be scored offline on the same
trainings: `--rules` prints, per rule (pick one candidate, or average the predictions of several), the
test MAE relative to always taking `full` (%).

Sets: the JARVIS development sets with their own train/test split, the matbench composition sets and
the bundled experimental formation enthalpies with a seeded 20 % test hold-out per seed (as
compare-scratch makes it); ``NAME@N`` trains on a seeded subsample of N rows (a small set of that
property, where `auto` has the most candidates).

Usage:
  python scripts/study_selection.py --sets piezo_max_dij,slme,matbench_steels_yield --seeds 3 --out study.json
  python scripts/study_selection.py --runoff study.json   (adds the two best candidates' 3-network ensembles)
  python scripts/study_selection.py --rules study.json [more.json ...]
  python scripts/study_selection.py --stopping WORK/run_*/candidates/reinit*/metrics.csv
      (replays early-stopping rules for fresh networks on the whole-budget validation curves of a study;
      the work folder is printed at the start; needs a study run with whole-budget fresh networks)
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


def split_files(name: str, seed: int, work: Path) -> tuple[Path, Path] | None:
    """(train, test) files of one set and seed, or None when the data are absent. ``NAME@N``: a seeded
    subsample of N rows of the training part (a smaller set of the same property)."""
    import pandas as pd
    from benchmark_transfer import SETS as JARVIS_SETS  # scripts/ is on the path when this script runs

    from elemnet_tl.compare import seeded_test_split
    from elemnet_tl.featurize import load_and_prepare

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
        tr, te = seeded_test_split(len(frame), 0.2, seed)  # compare-scratch's, so its tables and these agree
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
    options = _Options(strategy="auto", val=None, test=test, val_fraction=0.1, test_fraction=0.0, keep_head=None,
                       members=1,
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

        val_pred, test_pred = predict(x_va), predict(inputs.test.fractions)
        rows[cand] = {"val_mae": float(np.abs(val_pred - y_va).mean()), "best_val_mae": fit.best_val_mae,
                      "test_mae": float(np.abs(test_pred - inputs.test.target).mean()),
                      "val_pred": [float(v) for v in val_pred], "test_pred": [float(v) for v in test_pred],
                      "seconds": round(fit.seconds, 1)}
    return {"set": name, "seed": seed, "n_train": int(len(y_tr)), "n_val": int(len(y_va)),
            "n_test": int(len(inputs.test.target)), "val_target": [float(v) for v in y_va],
            "test_target": [float(v) for v in inputs.test.target], "picked": result.card["strategy"]["name"],
            "test_mae_run": result.card["metrics"]["test_mae"], "seconds": round(seconds, 1), "candidates": rows}


def runoff_one(r: dict, work: Path, finalists: int = 2) -> dict:
    """The ``finalists`` best candidates of one study row, each as `finetune --strategy C` with its
    default 3-network ensemble (each member validating on its own split): the members' validation MAEs
    and the ensemble's test predictions."""
    import pandas as pd

    from elemnet_tl.finetune import FINETUNE_DEFAULTS, finetune

    train, test = split_files(r["set"], r["seed"], work)
    order = sorted(r["candidates"], key=lambda c: r["candidates"][c]["val_mae"])
    out = {}
    for cand in order[:finalists]:
        run = finetune(train, work / f"runoff_{r['set']}_{r['seed']}_{cand.replace(':', '_')}", strategy=cand,
                       test=test, config=replace(FINETUNE_DEFAULTS, seed=r["seed"]), overwrite=True,
                       show_progress=False)
        ens = run.card["ensemble"]
        pred = pd.read_csv(run.run_dir / "test_predictions.csv")["prediction"].to_numpy()
        out[cand] = {"member_val_mae": [ens["first_member_val_mae"], *ens["other_members_val_mae"]],
                     "test_mae": run.card["metrics"]["test_mae"], "test_pred": [float(v) for v in pred]}
    return out


def runoff_table(results: list[dict]) -> str:
    """Per set and seed: the tool's way (best candidate on one split, its 3-network ensemble) against the
    runoff (the finalist with the lower mean validation MAE over its members' three splits) and the
    mean of both finalists' ensembles."""
    lines = ["| set | seed | argmin + members | runoff | both finalists | runoff picks |", "|---|---|---|---|---|---|"]
    rel: dict[str, list[float]] = {"runoff": [], "both": []}
    if not any("runoff" in r for r in results):
        return ""
    for r in results:
        if "runoff" not in r:
            continue
        ro, y = r["runoff"], np.asarray(r["test_target"])
        first = min(ro, key=lambda c: r["candidates"][c]["val_mae"])
        won = min(ro, key=lambda c: np.mean(ro[c]["member_val_mae"]))
        both = np.abs(np.mean([ro[c]["test_pred"] for c in ro], axis=0) - y).mean()
        rel["runoff"].append(ro[won]["test_mae"] / ro[first]["test_mae"] - 1)
        rel["both"].append(both / ro[first]["test_mae"] - 1)
        lines.append(f"| {r['set']} | {r['seed']} | {ro[first]['test_mae']:.4g} ({first}) | "
                     f"{ro[won]['test_mae']:.4g} | {both:.4g} | {won} |")
    change = " | ".join(f"**{100 * np.mean(v):+.2f} %**" for v in rel.values())
    lines.append(f"| **mean change** | | | {change} | |")
    return "\n".join(lines)


def paired_se(a: np.ndarray, b: np.ndarray) -> float:
    """Standard error of the mean of the paired differences ``a - b``."""
    d = a - b
    return float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("inf")


def combine(r: dict, rule: str) -> tuple[np.ndarray, str]:
    """Test predictions of what a rule keeps, and a short name of it.

    ``argmin``: the candidate of lowest validation MAE; ``full``: always ``full``; ``se:K``: ``full``
    unless the best candidate beats it by more than K paired standard errors of the validation errors;
    ``top:N``: the mean of the N best candidates; ``within:K``: the mean of every candidate within K
    paired standard errors of the best; ``all``: the mean of every candidate.
    """
    cands, y = r["candidates"], np.asarray(r["val_target"])
    err = {c: np.abs(np.asarray(v["val_pred"]) - y) for c, v in cands.items()}
    order = sorted(cands, key=lambda c: err[c].mean())
    kind, _, arg = rule.partition(":")
    if kind == "argmin":
        kept = order[:1]
    elif kind == "full":
        kept = ["full"]
    elif kind == "se":
        best = order[0]
        gain = (err["full"] - err[best]).mean()
        kept = [best] if best == "full" or gain > float(arg) * paired_se(err["full"], err[best]) else ["full"]
    elif kind == "top":
        kept = order[:int(arg)]
    elif kind == "within":
        kept = [c for c in order if (err[c] - err[order[0]]).mean() <= float(arg) * paired_se(err[c], err[order[0]])]
    elif kind == "all":
        kept = order
    else:
        raise ValueError(f"unknown rule {rule!r}")
    pred = np.mean([np.asarray(cands[c]["test_pred"]) for c in kept], axis=0)
    return pred, "+".join(kept)


def rules_table(results: list[dict], rules: list[str]) -> str:
    """Per set: mean test MAE of each rule relative to always `full` (%), and overall."""
    lines = ["| set | seeds | " + " | ".join(rules) + " |", "|---" * (len(rules) + 2) + "|"]
    by_set: dict[str, list[dict]] = {}
    for r in results:
        by_set.setdefault(r["set"], []).append(r)
    overall: dict[str, list[float]] = {rule: [] for rule in rules}
    for name, rs in by_set.items():
        cells = []
        for rule in rules:
            rel = []
            for r in rs:
                y = np.asarray(r["test_target"])
                pred, _ = combine(r, rule)
                full = np.asarray(r["candidates"]["full"]["test_pred"])
                rel.append(np.abs(pred - y).mean() / np.abs(full - y).mean() - 1)
            overall[rule].append(float(np.mean(rel)))
            cells.append(f"{100 * np.mean(rel):+.1f}")
        lines.append(f"| {name} | {len(rs)} | " + " | ".join(cells) + " |")
    means = " | ".join(f"**{100 * np.mean(v):+.2f}**" for v in overall.values())
    lines.append(f"| **mean over sets** | | {means} |")
    return "\n".join(lines)


def replay_stopping(curves: list[np.ndarray], min_fraction: float, patience_fraction: float) -> dict:
    """Replay a stopping rule for fresh networks on validation curves of whole-budget trainings: at
    least ``min_fraction`` of the epochs, then stop after ``patience_fraction`` of them without a better
    validation MAE. Returns the best validation MAE lost against the whole budget and the epochs saved."""
    from elemnet_tl.training import FitConfig, stops_early

    lost, saved = [], []
    for v in curves:
        n = len(v)
        cfg = FitConfig(epochs=n, min_epochs=int(np.ceil(min_fraction * n)),
                        patience=max(1, int(np.ceil(patience_fraction * n))))
        best, stop = 0, n
        for e in range(n):
            best = e if v[e] < v[best] else best
            if stops_early(e + 1, best + 1, cfg):
                stop = e + 1
                break
        lost.append(v[:stop].min() / v.min() - 1)
        saved.append(1 - stop / n)
    return {"curves": len(curves), "mean_val_lost": float(np.mean(lost)), "max_val_lost": float(np.max(lost)),
            "worse_curves": int(np.sum(np.asarray(lost) > 0)), "epochs_saved": float(np.mean(saved))}


STOPPING_RULES = [(0.0, 0.2), (0.5, 0.2), (0.5, 0.25), (0.5, 1 / 3), (0.6, 0.4)]
"""(min_fraction, patience_fraction) pairs replayed; the last is `transfer.fresh_network_config`'s."""


RULES = ["argmin", "se:0.5", "se:1", "se:2", "top:2", "top:3", "within:1", "within:2", "all"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="piezo_max_dij,slme,matbench_steels_yield,matbench_jdft2d")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--out", default="study_selection.json")
    parser.add_argument("--rules", nargs="+", metavar="JSON", help="only score selection rules on these results")
    parser.add_argument("--runoff", metavar="JSON", help="add the two best candidates' ensembles to these results")
    parser.add_argument("--stopping", nargs="+", metavar="METRICS_CSV",
                        help="replay stopping rules on these whole-budget fresh-network metrics.csv files")
    args = parser.parse_args()
    if args.stopping:
        import pandas as pd

        curves = [pd.read_csv(f)["val_mae"].to_numpy() for f in args.stopping]
        for rule in STOPPING_RULES:
            print(json.dumps({"min_fraction": round(rule[0], 3), "patience_fraction": round(rule[1], 3),
                              **replay_stopping(curves, *rule)}))
        return 0
    if args.rules:
        results = [r for f in args.rules for r in json.loads(Path(f).read_text())]
        print(rules_table(results, RULES))
        print()
        print(runoff_table(results))
        return 0
    work = Path(tempfile.mkdtemp(prefix="elemtl_selection_"))
    print(f"run directories in {work}", file=sys.stderr)
    if args.runoff:
        path = Path(args.runoff)
        results = json.loads(path.read_text())
        for r in results:
            if "runoff" not in r:
                r["runoff"] = runoff_one(r, work)
                path.write_text(json.dumps(results))
                print(json.dumps({"set": r["set"], "seed": r["seed"],
                                  **{c: v["member_val_mae"] + [v["test_mae"]] for c, v in r["runoff"].items()}}),
                      flush=True)
        return 0
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
