"""compare-scratch outputs: results.json / results.csv, report.md and the plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import plural
from .io import atomic_path, write_json, write_table, write_text

TL_METHODS = ("tl-finetune", "tl-features")
SCRATCH_METHODS = ("sc-ef", "sc-pa", "pa-rf")
DESCRIPTIONS = {
    "tl-finetune": "fine-tuned pretrained ElemNet",
    "tl-features": "pretrained ElemNet activations + scikit-learn regressor",
    "sc-ef": "ElemNet from scratch on element fractions",
    "sc-pa": "ElemNet from scratch on Magpie physical attributes",
    "pa-rf": "random forest on Magpie physical attributes",
    "mean": "training mean (base)",
}


NON_FINITE = "non-finite predictions"
"""The reason a method fails on a split when any of its test predictions is NaN or infinite (its MAE would be
NaN, and a NaN compared with ``min`` depends on the order of the methods)."""


def _succeeded(outcome) -> bool:
    """An outcome with metrics and a finite MAE (an older run's NaN MAE is a failure, as it is now)."""
    mae = (outcome.metrics or {}).get("mae")
    return mae is not None and bool(np.isfinite(mae))


def _reason(outcome) -> str:
    return outcome.error or NON_FINITE


def summarize(outcomes: list, size: float = 1.0) -> dict:
    """Per method at one training size: mean ± std of test MAE, RMSE, R² over the seeds that worked,
    per-seed values, seconds.

    ``seeds_ok`` / ``seeds_failed`` count the seeds that worked and failed. A method that failed on some
    seeds only keeps its mean over the others, with ``error`` "failed on k of n seeds: reason"; its std is
    the sample std of the seeds that worked (None when only one of several did: the spread is unknown;
    0.0 for a method run on a single seed, as before)."""
    out: dict = {}
    methods = list(dict.fromkeys(o.method for o in outcomes))
    for method in methods:
        rows = [o for o in outcomes if o.method == method and o.size == size]
        ok = [o for o in rows if _succeeded(o)]
        bad = [o for o in rows if not _succeeded(o)]
        entry: dict = {"per_seed": [{"seed": o.seed, **(o.metrics or {}),
                                     "error": o.error if _succeeded(o) else _reason(o),
                                     "seconds": round(o.seconds, 2)} for o in rows],
                       "seconds": round(float(sum(o.seconds for o in rows)), 2),
                       "description": DESCRIPTIONS.get(method, method),
                       "seeds_ok": len(ok), "seeds_failed": len(bad)}
        if ok:
            mae = np.array([o.metrics["mae"] for o in ok])
            std = float(mae.std(ddof=1)) if len(mae) > 1 else (None if bad else 0.0)
            entry.update(test_mae_mean=float(mae.mean()), test_mae_std=std,
                         test_rmse_mean=float(np.mean([o.metrics["rmse"] for o in ok])),
                         test_r2_mean=_finite_mean([o.metrics["r2"] for o in ok]))
            error = (f"failed on {len(bad)} of {plural(len(rows), 'seed')}: {_reason(bad[0])}" if bad else None)
        else:
            error = _reason(rows[0]) if rows else "not run"
            entry.update(test_mae_mean=None, test_mae_std=None, test_rmse_mean=None, test_r2_mean=None)
        if error is not None:
            entry["error"] = short_reason(error)
            if entry["error"] != error:
                entry["error_detail"] = error
        out[method] = entry
    return out


SHORT_REASON = 60
"""A failed method's ``error`` in the summary is at most this long (the console table's cell); longer
messages are cut at a word, the whole one kept as ``error_detail``."""


def short_reason(text: str | None, limit: int = SHORT_REASON) -> str | None:
    """``text`` cut to at most ``limit`` characters at a word boundary, with "…" when cut."""
    if text is None or len(text) <= limit:
        return text
    cut = text[:limit - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip(" ,;:(") + "…"


def _finite_mean(values: list[float]) -> float | None:
    """Mean of the finite values (R² is NaN for a one-row or constant test set); None when there are none."""
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


MIN_TEST_ROWS = 30
"""Below this many test rows a difference in test MAE says little: the verdict is marked not conclusive."""


def seed_maes(entry: dict) -> dict[int, float]:
    """A summary entry's test MAE by seed, for the seeds that worked (no error, a finite MAE)."""
    maes: dict[int, float] = {}
    for i, p in enumerate(entry.get("per_seed") or []):
        mae = p.get("mae")
        if p.get("error") is None and mae is not None and np.isfinite(mae):
            maes[p.get("seed", i)] = float(mae)
    return maes


def _std(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


ONE_SEED_GAP = 0.10
"""With one seed, a smaller relative gap is not conclusive: the seed-to-seed spread of a test MAE on a few
hundred rows is often about this large (docs/benchmarks.md)."""


def verdict(summary: dict, n_test: int | None = None, in_training: int = 0, constant: bool = False) -> dict:
    """Best transfer vs best from-scratch method, the margin, and why it may not be conclusive
    (methods that failed on every seed or on some, a small test set, a gap within the seed-to-seed spread).

    The methods of one side (transfer, from scratch, or all for the winner) are ranked by their mean test
    MAE over the seeds every one of them that worked at all succeeded on (each one's own seeds when there
    is none), so a method that failed on its hard seeds does not look better for it, and a failure of a
    method outside the side does not change the side's ranking. The best transfer and best from-scratch
    methods are then compared paired, on the seeds both succeeded on (``paired_seeds`` of ``seeds``).
    ``in_training``: test rows whose composition is in the training data (a test file that overlaps it);
    ``constant``: the training target has one value (nothing to compare: never conclusive)."""
    maes = {m: seed_maes(e) for m, e in summary.items()}
    worked = [m for m in summary if maes[m]]

    def best(names):
        group = [m for m in names if m in worked]
        common = set.intersection(*(set(maes[m]) for m in group)) if group else set()
        have = [(float(np.mean([maes[m][s] for s in sorted(common or maes[m])])), m) for m in group]
        return min(have) if have else None

    tl, sc = best(TL_METHODS), best(SCRATCH_METHODS)
    winner = best(list(summary))
    failed = [m for m in summary if not maes[m]]
    runs = {m: len(summary[m].get("per_seed") or []) or 1 for m in summary}
    partly = [m for m in worked if len(maes[m]) < runs[m]]
    out = {"winner": winner[1] if winner else None, "best_transfer": tl[1] if tl else None,
           "best_scratch": sc[1] if sc else None, "failed": failed, "partly_failed": partly}
    caveats = []
    for side, names, kept in (("transfer", TL_METHODS, tl), ("from-scratch", SCRATCH_METHODS, sc)):
        lost = [m for m in names if m in failed]
        if lost:
            rest = f"the {side} side is {kept[1]} alone" if kept else f"no {side} method to compare"
            caveats.append(f"{', '.join(lost)} failed: {rest}")
    caveats += [f"{m} failed on {runs[m] - len(maes[m])} of {plural(runs[m], 'seed')}" for m in partly]
    most = max(runs.values(), default=1)  # a --resume that added seeds for some methods only
    caveats += [f"{m} ran on {runs[m]} of {plural(most, 'seed')}" for m in summary if runs[m] < most]
    if in_training:
        caveats.append(f"{in_training} of the {plural(n_test or in_training, 'test row')} are compositions of the "
                       "training data: every test MAE flatters, most of all for methods that memorize rows (pa-rf)")
    # most test rows seen in training: the comparison measures memory, not prediction
    conclusive = not constant and not 2 * in_training > (n_test or in_training)
    if constant:
        caveats.append("the training target has one value: there is nothing to learn, and the gaps are rounding")
    if n_test is not None and n_test < MIN_TEST_ROWS:
        caveats.append(f"only {plural(n_test, 'test row')}: too small to be conclusive "
                       f"(at least {MIN_TEST_ROWS} are needed)")
        conclusive = False
    if tl and sc:
        paired = sorted(set(maes[tl[1]]) & set(maes[sc[1]]))
        if not paired:
            caveats.append(f"{tl[1]} and {sc[1]} succeeded on no common seed: not compared")
            conclusive = False
        else:
            t = [maes[tl[1]][s] for s in paired]
            c = [maes[sc[1]][s] for s in paired]
            t_mae, s_mae = float(np.mean(t)), float(np.mean(c))
            out["transfer_mae"], out["scratch_mae"] = t_mae, s_mae
            out["transfer_gain_percent"] = 100.0 * (s_mae - t_mae) / s_mae if s_mae > 0 else None  # MAE 0
            out["transfer_wins"] = bool(t_mae < s_mae)
            out["paired_seeds"], out["seeds"] = len(paired), max(runs[tl[1]], runs[sc[1]])
            if len(paired) == 1 < out["seeds"]:
                caveats.append("compared on one seed only: the seed-to-seed spread is unknown")
                conclusive = False
            elif len(paired) == 1 and abs(s_mae - t_mae) < ONE_SEED_GAP * s_mae:  # the headline's base
                caveats.append(f"one seed: the seed-to-seed spread is unknown, and a gap under "
                               f"{ONE_SEED_GAP:.0%} is within what it often is on small sets (--seeds 3 measures it)")
                conclusive = False
            if len(paired) > 1:
                spread = float(np.hypot(_std(t), _std(c)))
                out["seed_spread"] = spread
                if abs(s_mae - t_mae) <= spread:
                    caveats.append(f"the gap ({abs(s_mae - t_mae):.3g}) is within the seed-to-seed spread "
                                   f"({spread:.3g})")
                    conclusive = False
    out["conclusive"] = conclusive
    out["caveats"] = caveats
    return out


def headline(v: dict) -> str | None:
    """The verdict in one sentence (no markup), with its caveats; None when there is nothing to compare."""
    if not (v.get("best_transfer") and v.get("best_scratch") and "transfer_wins" in v):
        caveats = "; ".join(v.get("caveats") or [])
        return f"Caveats: {caveats}." if caveats else None
    word = "beats" if v["transfer_wins"] else "does NOT beat"
    gain = v.get("transfer_gain_percent")
    if gain == 0:
        word = "ties with"
    if gain is None:  # the best from-scratch test MAE is 0: a relative gain is undefined
        tl = v.get("transfer_mae") or 0.0
        word = "ties with" if tl == 0 else word
        by = "both predict the test rows exactly (test MAE 0)" if tl == 0 else f"test MAE {tl:.4g} vs 0"
    else:
        size = f"{abs(gain):.1f}" if abs(gain) >= 0.1 else f"{abs(gain):.2f}"  # not "0.0 % lower"
        by = ("the same test MAE" if gain == 0 else
              f"{size} % {'lower' if v['transfer_wins'] else 'higher'} test MAE")
    paired, seeds = v.get("paired_seeds"), v.get("seeds")
    if paired is not None and seeds is not None and paired < seeds:
        by += f", on the {paired} of {plural(seeds, 'seed')} both have results for"
    text = f"Transfer ({v['best_transfer']}) {word} the best from-scratch method ({v['best_scratch']}): {by}"
    if not v.get("conclusive", True):
        text = "Not conclusive. " + text
    return text + "".join(f"; {c}" for c in v.get("caveats") or []) + "."


def _plots(out_dir: Path, outcomes: list, splits: list, summary: dict, sizes: list[float], unit: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    methods = [m for m in summary if summary[m]["test_mae_mean"] is not None]
    # parity: seed 0, full size
    first = [o for o in outcomes if o.seed == 0 and o.size == 1.0 and o.predictions is not None and _succeeded(o)]
    split0 = next((s for s in splits if s.seed == 0 and s.size == 1.0), None)
    if first and split0 is not None:
        n = len(first)
        cols = min(3, n)
        rows = (n + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.4 * rows), squeeze=False)
        y = split0.test.target
        which = " (seed 0)" if any(o.seed != 0 for o in outcomes) else ""  # the table shows the mean over seeds
        lo, hi = float(np.min(y)), float(np.max(y))
        for ax, o in zip(axes.flat, first):
            ax.scatter(y, o.predictions, s=6, alpha=0.5)
            ax.plot([lo, hi], [lo, hi], color="grey", lw=1)
            ax.set_title(f"{o.method}: MAE {o.metrics['mae']:.3g}{which}", fontsize=9)
            ax.set_xlabel(f"true {unit}".strip(), fontsize=8)
            ax.set_ylabel("predicted", fontsize=8)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        fig.tight_layout()
        with atomic_path(out_dir / "parity.png") as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        made.append("parity.png")
    if methods:
        fig, ax = plt.subplots(figsize=(1.2 * len(methods) + 2, 3.5))
        means = [summary[m]["test_mae_mean"] for m in methods]
        stds = [summary[m]["test_mae_std"] or 0.0 for m in methods]
        colors = ["tab:green" if m in TL_METHODS else "tab:blue" if m in SCRATCH_METHODS else "tab:grey"
                  for m in methods]
        ax.bar(methods, means, yerr=stds, capsize=4, color=colors)
        ax.set_ylabel(f"test MAE {unit}".strip())
        ax.set_title("test MAE (mean ± sample std over seeds)")
        plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
        fig.tight_layout()
        with atomic_path(out_dir / "mae_bars.png") as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        made.append("mae_bars.png")
    if len(sizes) > 1:
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for m in methods:
            pts = []
            for size in sizes:
                ok = [o.metrics["mae"] for o in outcomes if o.method == m and o.size == size and _succeeded(o)]
                n = [s.train.n_kept for s in splits if s.size == size]
                if ok:  # the sample std, as the tables and the bar plot (none for one seed)
                    pts.append((np.mean(n), np.mean(ok), _std(ok)))
            if pts:
                x, yv, e = zip(*pts)
                ax.errorbar(x, yv, yerr=e, marker="o", capsize=3, label=m)
        ax.set_xscale("log")
        ticks = sorted({int(round(np.mean([s.train.n_kept for s in splits if s.size == size]))) for size in sizes})
        ax.set_xticks(ticks, [str(t) for t in ticks])  # the sizes trained, not crowded log-scale labels
        ax.minorticks_off()
        ax.set_xlabel("training rows")
        ax.set_ylabel(f"test MAE {unit}".strip())
        ax.legend(fontsize=8)
        fig.tight_layout()
        with atomic_path(out_dir / "learning_curve.png") as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        made.append("learning_curve.png")
    return made


def _fmt(v: float | None, std: float | None = None) -> str:
    if v is None:
        return "failed"
    return f"{v:.4g} ± {std:.2g}" if std is not None else f"{v:.4g}"


def _picks(chosen: dict[str, int]) -> str:
    return ", ".join(f"{name} ({n} run{'s' if n > 1 else ''})" for name, n in chosen.items())


def _strategy_words(setup: dict) -> str:
    chosen = setup.get("strategies_chosen") or {}
    if setup["strategy"] != "auto" or not chosen:
        return str(setup["strategy"])
    with_pa = any("+pa" in name for name in chosen)
    note = "; +pa: the input of physical attributes to the first layer trains too" if with_pa else ""
    return f"auto (chose {_picks(chosen)}{note})"


def _members_words(members: int, networks: list[str]) -> str:
    what = ("trains one network, holding out 10 %" if members == 1
            else f"averages {members} networks, each holding out its own 10 %")
    which = (f"Every network method ({', '.join(networks)})" if len(networks) > 1
             else f"The network method {networks[0]}")
    return (f"- {which} {what} of the training rows for early stopping; "
            "the test rows are used once, for the scores above.")


def _source_words(setup: dict) -> str:
    """``--from`` and, as the runs' cards say, the model each transfer method started from."""
    used = {m: chosen for m, chosen in (setup.get("sources_used") or {}).items() if chosen}
    source = str(setup["source"])
    if not used:
        return source
    how = (" (chosen per run by a ridge probe of each bundled model's activations, cross-validated on the "
           "training rows)") if source.strip().lower() == "auto" else ""
    return f"{source}{how} — " + "; ".join(f"{m} started from {_picks(chosen)}" for m, chosen in used.items())


def _rejected_words(setup: dict, which: str) -> str:
    entry = (setup.get("rejected_files") or {}).get(which)
    return f" (rejected rows listed in {entry['file']})" if entry else ""


def _test_data_lines(setup: dict) -> list[str]:
    t = setup.get("test_data")
    if not t:
        return []
    return [f"- Test data: {t.get('source')} — {plural(t.get('read') or 0, 'row')} read, {t.get('rejected')} rejected, "
            f"{t.get('kept')} scored{_rejected_words(setup, 'test')}."]


def markdown_table(summary: dict) -> str:
    """One row per method; with a single seed the MAE column has no (meaningless) ± 0."""
    one_seed = all(len(e["per_seed"]) <= 1 for e in summary.values())
    title = "test MAE (one seed)" if one_seed else "test MAE (mean ± sample std)"
    lines = [f"| method | what it is | {title} | RMSE | R² | seconds |", "|---|---|---|---|---|---|"]
    for m, e in summary.items():
        if e["test_mae_mean"] is None:
            error = str(e.get("error_detail") or e.get("error")).replace("|", "\\|")
            lines.append(f"| {m} | {e['description']} | failed: {error} | | | {e['seconds']:.0f} |")
        else:
            ok = e.get("seeds_ok", len(e["per_seed"]))
            mae = _fmt(e["test_mae_mean"], None if one_seed or ok < 2 else e["test_mae_std"])
            if e.get("seeds_failed"):
                detail = str(e.get("error_detail") or e.get("error")).replace("|", "\\|")
                mae += f" ({plural(ok, 'seed')}; {detail})"
            r2 = "n/a" if e["test_r2_mean"] is None else f"{e['test_r2_mean']:.3f}"
            lines.append(f"| {m} | {e['description']} | {mae} | "
                         f"{e['test_rmse_mean']:.4g} | {r2} | {e['seconds']:.0f} |")
    return "\n".join(lines)


NOT_RUN = "—"
"""A learning-curve cell for a (method, fraction) pair that has no outcome (never run, e.g. after a
``--resume`` with other methods or sizes); "failed" is kept for real errors."""


def _curve_cell(entry: dict | None) -> str:
    if not entry or not entry["per_seed"]:
        return NOT_RUN
    if entry["test_mae_mean"] is None:
        return "failed"
    cell = _fmt(entry["test_mae_mean"])
    if entry.get("seeds_failed"):
        cell += f" (failed on {entry['seeds_failed']} of {len(entry['per_seed'])})"
    return cell


def failed_methods(summary: dict, curve: dict | None = None) -> list[str]:
    """The methods that failed on any seed, at the full training size or at a smaller one (``curve``:
    the summaries by size); the CLI exits 1 when there is one. A method that failed at a smaller size
    only gets that as its ``error`` in ``summary`` (the CLI's message names it)."""
    failed = []
    for m, e in summary.items():
        if e["test_mae_mean"] is None or e.get("seeds_failed"):
            failed.append(m)
            continue
        for size, c in (curve or {}).items():
            smaller = c.get(m) or {}
            if smaller.get("seeds_failed"):
                bad = next(p["error"] for p in smaller["per_seed"] if p.get("error"))
                n = len(smaller["per_seed"])
                error = (f"failed at training fraction {size} on {smaller['seeds_failed']} of {plural(n, 'seed')}: "
                         f"{bad}")
                e["error"] = short_reason(error)
                if e["error"] != error:
                    e["error_detail"] = error
                failed.append(m)
                break
    return failed


def _study_split_words(study: dict, setup: dict) -> str:
    """Whether the study's figures are comparable: only on its own split (its test set given as --test)."""
    if study.get("same_split"):
        return (f"Same split as the study: the data and the --test file are its JARVIS {study['property']} "
                "training and test sets.")
    if setup.get("test_data"):
        return (f"The split may differ from the study's (the data and the --test file are not both its JARVIS "
                f"{study['property']} sets): its figures are for orientation only.")
    return ("The split differs from the study's (a seeded hold-out of the data, not its JARVIS test set): "
            "its figures are for orientation only.")


def write_report(out_dir: Path, outcomes: list, splits: list, setup: dict, study: str | None) -> dict:
    """Write every output file; returns the results dict (also results.json)."""
    sizes = sorted({o.size for o in outcomes})
    summary = summarize(outcomes, 1.0)
    curve = {f"{s:g}": summarize(outcomes, s) for s in sizes} if len(sizes) > 1 else None
    seen = (setup.get("test_data") or {}).get("rows_in_training_data", 0)
    results = {"methods": summary, "verdict": verdict(summary, setup.get("n_test"), seen,
                                                      bool(setup.get("target_constant"))), "split": setup["split"],
               "target": {"name": setup.get("target") or "target", "unit": setup.get("unit", "")},
               "data": setup["data"], "setup": setup, "failed": failed_methods(summary, curve),
               "std": "test_mae_std: the sample standard deviation (ddof 1) over the seeds that worked"}
    curve_rows = {f"{s.size:g}": s.train.n_kept for s in splits}  # a fraction's rows (at least 10)
    if curve:
        results["learning_curve"] = {k: {m: {"test_mae_mean": v["test_mae_mean"], "test_mae_std": v["test_mae_std"],
                                             "seeds_ok": v["seeds_ok"], "seeds_failed": v["seeds_failed"]}
                                         for m, v in c.items()} for k, c in curve.items()}
        results["learning_curve_training_rows"] = {k: curve_rows.get(k) for k in curve}
    if study:
        from .compare import STUDY_TEST_MAE

        base, sc, tl = STUDY_TEST_MAE[study]
        results["study"] = {"property": study, "base": base, "best_scratch": sc, "best_transfer": tl,
                            "same_split": bool(setup.get("study_split"))}
    write_json(out_dir / "results.json", results)
    rows = [{"method": o.method, "seed": o.seed, "train_size": o.size, **(o.metrics or {}), "seconds": o.seconds,
             "error": o.error} for o in outcomes]
    write_table(pd.DataFrame(rows), out_dir / "results.csv")
    plots = _plots(out_dir, outcomes, splits, summary, sizes, setup.get("unit", ""))
    v = results["verdict"]
    unit = setup.get("unit", "")
    lines = [f"# Transfer learning vs training from scratch: {setup['data'].get('source')}", ""]
    said = headline(v)
    if said:
        lines += [f"**{said}**" + (f" Winner overall: {v['winner']}." if v.get("winner") else ""), ""]
    target = setup.get("target") if setup.get("target") not in (None, "", "target") else "the target"
    networks = [m for m in ("tl-finetune", "sc-ef", "sc-pa") if m in summary]
    lines += [markdown_table(summary), "", f"Test MAE of {target}" + (f" in {unit}." if unit else " (in its unit)."),
              "", "## Setup", "",
              f"- Data: {setup['data'].get('source')} — {plural(setup['data'].get('read') or 0, 'row')} read, "
              f"{setup['data'].get('rejected')} rejected, {setup['data'].get('merged')} merged as duplicates "
              f"({setup['data'].get('duplicates')}), {setup['data'].get('kept')} compositions"
              + _rejected_words(setup, "train") + ".",
              *_test_data_lines(setup),
              f"- Split: {setup['split']}; {setup['n_train']} training rows. Every method sees the same rows.",
              f"- Seeds: {setup['seeds']} " + ("(each method repeated; mean ± sample std)." if setup["seeds"] > 1
                                                else "(each method run once: no spread to judge noise by)."),
              f"- Pretrained source: {_source_words(setup)}.",
              *([f"- Fine-tuning strategy: {_strategy_words(setup)}."] if "tl-finetune" in summary else []),
              *([_members_words(setup.get("members", 1), networks)] if networks else [])]
    if study:
        s = results["study"]
        lines += ["", "## The study's numbers (Gupta et al., Nat. Commun. 12, 6595, 2021)", "",
                  f"base (mean) {s['base']}, best from scratch {s['best_scratch']}, "
                  f"best transfer {s['best_transfer']}. {_study_split_words(s, setup)}"]
    if curve:
        lines += ["", "## Learning curve (test MAE by training fraction)", "",
                  "| fraction | training rows | " + " | ".join(summary) + " |", "|---|---|" + "---|" * len(summary)]
        for k, c in curve.items():
            lines.append(f"| {k} | {curve_rows.get(k, '')} | " + " | ".join(_curve_cell(c.get(m)) for m in summary)
                         + " |")
        if any(_curve_cell(c.get(m)) == NOT_RUN for c in curve.values() for m in summary):
            lines += ["", f"{NOT_RUN}: not run at that fraction."]
        lines += ["", "A fraction trains on that share of the training rows, and on at least 10."]
    lines += ["", "## Files", ""] + [f"- ![{p}]({p})" for p in plots] + [
        "- results.json, results.csv: every number above, per seed", "- runs/: each method's run directory"]
    write_text(out_dir / "report.md", "\n".join(lines) + "\n")
    return results
