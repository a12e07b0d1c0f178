"""The ``elemtl`` command line: thin wrappers over the Python API.

Exit codes: 0 success, 2 bad input (one line naming file, column or row and the reason), 1 internal error.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from .cli_features import target_of_other_files
from .errors import InputError, plural
from .progress import console

app = typer.Typer(
    name="elemtl",
    help=(
        "Transfer learning of materials properties from chemical composition (ElemNet).\n\n"
        "Typical session:\n\n"
        "  elemtl featurize expt-formation-enthalpy -o features.csv\n\n"
        "  elemtl pretrain big_dft.csv -o runs/pre\n\n"
        "  elemtl finetune my_property.csv -o runs/ft --test my_test.csv\n\n"
        "  elemtl compare-scratch -o results"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"elemtl {__version__}")  # stdout: `elemtl --version > file` keeps it
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Transfer learning of materials properties from chemical composition (ElemNet)."""


def _fail(message: str, code: int) -> None:
    from rich.markup import escape

    first = message.strip().splitlines()[0] if message.strip() else "unknown error"
    console.print(f"[bold red]error:[/] {escape(first)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


_AFTER_INTERRUPT = {
    "pretrain": "continue with --resume (the last finished epoch is kept)",
    "compare_scratch": "finished methods are kept; continue with --resume",
    "finetune": "nothing was saved; run the command again",
    "extract_features_command": "run the command again with --overwrite",
}


def handles_errors(func: Callable) -> Callable:
    """Turn user errors into one line + exit 2, and other errors into one line + exit 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except InputError as exc:
            _fail(str(exc), 2)
        except (ValueError, FileNotFoundError, PermissionError, IsADirectoryError) as exc:
            _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 2)
        except KeyboardInterrupt:
            _fail(f"interrupted: {_AFTER_INTERRUPT.get(func.__name__, 'nothing was finished; run the command again')}",
                  130)
        except Exception as exc:  # last resort: one line, traceback only on request
            if os.environ.get("ELEMTL_DEBUG"):
                raise
            _fail(f"internal error: {type(exc).__name__}: {exc} (set ELEMTL_DEBUG=1 for the traceback)", 1)

    return wrapper


# -- shared options --------------------------------------------------------------------------------
FormulaCol = typer.Option(None, "--formula-col", help="Formula column (default: found by name: formula, "
                          "composition, formula_pretty, pretty_formula, compound).")
GUESSED_TARGET = "Target column (default: 'target', or the only other numeric column, ids aside)."
TargetCol = typer.Option(None, "--target-col", help=GUESSED_TARGET)
PredictTargetCol = typer.Option(None, "--target-col", help="Column to score the predictions against (default: one "
                                "named 'target' or as the model's training target; no other is guessed).")
TrainTargetCol = typer.Option(None, "--target-col", help=GUESSED_TARGET + target_of_other_files("--val/--test"))
CompareTargetCol = typer.Option(None, "--target-col", help=GUESSED_TARGET + target_of_other_files("--test"))
Seed = typer.Option(0, "--seed", help="One seed for the split, initialisation and shuffling.")
Device = typer.Option("auto", "--device", help="auto (CUDA when present), cpu or cuda.")
Quiet = typer.Option(False, "--quiet", "-q", help="No progress bar (summaries and warnings still print).")
RunDir = typer.Option(..., "--output", "-o", help="Run directory to create.")
ValFile = typer.Option(None, "--val", help="Validation file (default: a seeded hold-out).")
ValFraction = typer.Option(0.1, "--val-fraction", help="Hold-out fraction when no --val.")
TestFile = typer.Option(None, "--test", help="Test file, scored once at the end (never deduplicated).")
TestFraction = typer.Option(0.0, "--test-fraction", help="Instead of --test: hold out this seeded fraction of the "
                            "data (after merging duplicates) as the test set, scored once at the end.")
Overwrite = typer.Option(False, "--overwrite", help="Replace a finished run in OUTPUT.")


def _echo_summary(lines: list[str]) -> None:
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True, markup=False)


@app.command()
@handles_errors
def datasets() -> None:
    """List the named datasets (usable wherever a DATA file is expected) and the bundled models.

    Example: elemtl datasets
    """
    from rich.console import Console
    from rich.table import Table as RichTable

    from .checkpoint import bundled_models
    from .named import list_datasets

    table = RichTable(title="named datasets")
    table.add_column("name", no_wrap=True)  # the name is what users type: never cut it
    for col in ("rows", "target", "unit", "offline"):
        table.add_column(col, overflow="fold")
    for d in list_datasets():
        choices = ", ".join(d.get("targets") or [])
        target = d.get("target") or (f"--target-col: {choices}" if choices else "name it with --target-col")
        table.add_row(d["name"], str(d.get("rows") or "?"), str(target), str(d.get("unit") or ""),
                      "yes" if d.get("offline") else "download")
    out = Console()  # a listing: to stdout, for grep and less; piped, rich would wrap it at 80 columns
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out = Console(width=140)
    out.print(table)
    models = RichTable(title="bundled models (--from bundled:NAME)")
    for col in ("name", "target", "unit", "held-out test MAE"):
        models.add_column(col)
    for m in bundled_models():
        mae = m.get("test_mae")
        models.add_row(m["name"], m["target"], m["unit"], "?" if mae is None else f"{mae:.4g}")
    out.print(models)


@app.command()
@handles_errors
def featurize(
    data: str = typer.Argument(..., help="Input table (csv, csv.gz, parquet, json) or a named dataset."),
    output: Path = typer.Option(..., "--output", "-o", help="Output table: .csv, .csv.gz or .parquet."),
    duplicates: str = typer.Option("auto", "--duplicates", help="auto | most-stable | mean | keep. auto keeps "
                                   "the most stable polymorph when stability is known (--stability-col, a "
                                   "formation-energy or energy-above-hull column, or a formation-energy target), "
                                   "else averages duplicates."),
    stability_col: Optional[str] = typer.Option(None, "--stability-col", help="Column whose lowest value marks "
                                                "the most stable polymorph."),
    pa: bool = typer.Option(False, "--pa", help="Add Magpie physical attributes (pa_* columns)."),
    formula_col: Optional[str] = FormulaCol,
    target_col: Optional[str] = TargetCol,
) -> None:
    """Parse formulas, write ElemNet's 86 element fractions, one row per composition.

    Columns: line (in the input file), formula, target, the input's other columns (ids), H ... Pu (+ pa_*).

    A table of formulas alone (no numeric column but ids: id, sample_no, icsd_id, ...) gets fractions for
    every parsed row, no target.

    Rejected rows go to OUTPUT's stem + '.rejected.csv' (line, formula, reason); rows merged as duplicates
    are listed in its stem + '.merged.csv' (line, formula, target, kept_line, kept_target).

    Example: elemtl featurize expt-formation-enthalpy -o features.csv --pa
    """
    from .featurize import featurize as run
    from .featurize import input_warnings, merged_note, merged_path, rejected_path

    frame, result = run(data, output, duplicates=duplicates, stability_col=stability_col, pa=pa,
                        formula_col=formula_col, target_col=target_col)
    lines = [result.summary(), f"wrote {output} ({plural(len(frame), 'row')} x {frame.shape[1]} columns)",
             *input_warnings(result)]
    if result.n_rejected:
        lines.append(f"rejected rows: {rejected_path(output)}")
    if result.merged_rows is not None:
        lines.append(merged_note(result, merged_path(rejected_path(output))))
    _echo_summary(lines)


def _at_least_one(**options: int | None) -> None:
    """Options whose default is sized from the data (the API's 0): a value given must be >= 1."""
    for name, value in options.items():
        if value is not None and value < 1:
            raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def _fit_config(defaults, epochs, batch_size, lr, patience, seed):
    return replace(defaults, **{k: v for k, v in dict(epochs=epochs, batch_size=batch_size, lr=lr,
                                                       patience=patience, seed=seed).items() if v is not None})


@app.command()
@handles_errors
def pretrain(
    data: str = typer.Argument(..., help="Training table or named dataset (a large DFT set)."),
    output: Path = RunDir,
    val: Optional[Path] = ValFile,
    val_fraction: float = ValFraction,
    test: Optional[Path] = TestFile,
    test_fraction: float = TestFraction,
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Maximum epochs (default: 120)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Batch size (default: 512)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate of AdamW (default: 1e-3)."),
    patience: Optional[int] = typer.Option(None, "--patience", help="Early-stopping patience in epochs "
                                           "(default: 30, or a quarter of a longer --epochs); 0 disables."),
    arch: str = typer.Option("1024x4-512x3-256x3-128x3-64x2-32x1", "--arch", help="Hidden layers, width x count."),
    dropout: float = typer.Option(0.0, "--dropout", help="Dropout after each hidden layer (ElemNet study: none)."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="AdamW weight decay (default: 1e-4)."),
    ema: float = typer.Option(0.0, "--ema", help="Validate and keep a moving average of the weights over about "
                              "this many epochs (0: off)."),
    pa: bool = typer.Option(False, "--pa", help="Magpie physical attributes (computed from the formula) also "
                            "feed the first layer."),
    init: Optional[str] = typer.Option(None, "--init", help="Start from this model's weights (run directory or "
                                       "'bundled') instead of fresh ones; --arch and --dropout are then "
                                       "the model's."),
    duplicates: str = typer.Option("most-stable", "--duplicates", help="most-stable | mean | keep | auto."),
    stability_col: Optional[str] = typer.Option(None, "--stability-col", help="Column marking the most stable "
                                                "polymorph (default: the target)."),
    seed: int = Seed,
    device: str = Device,
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in OUTPUT."),
    overwrite: bool = Overwrite,
    formula_col: Optional[str] = FormulaCol,
    target_col: Optional[str] = TrainTargetCol,
    quiet: bool = Quiet,
) -> None:
    """Pretrain ElemNet on a large DFT set (duplicates: lowest value per composition).

    Example: elemtl pretrain matbench_mp_e_form -o runs/mp --test-fraction 0.1
    """
    from .pretrain import PRETRAIN_DEFAULTS, default_patience
    from .pretrain import pretrain as run

    _at_least_one(epochs=epochs, batch_size=batch_size)  # one rule for 0 and -1
    if patience is None and epochs is not None:
        patience = default_patience(epochs)
    config = _fit_config(PRETRAIN_DEFAULTS, epochs, batch_size, lr, patience, seed)
    if weight_decay is not None:
        config = replace(config, weight_decay=weight_decay)
    config = replace(config, ema_epochs=ema)  # FitConfig rejects a bad value in one line
    run(data, output, val=val, test=test, val_fraction=val_fraction, test_fraction=test_fraction,
                 arch=arch, dropout=dropout, config=config, device=device, resume=resume, overwrite=overwrite,
                 duplicates=duplicates, init=init, attributes=pa,
                 formula_col=formula_col, target_col=target_col, stability_col=stability_col,
                 show_progress=not quiet, notices=True)  # notices: the run's summary lines too


@app.command()
@handles_errors
def finetune(
    data: str = typer.Argument(..., help="Training table or named dataset of the target property."),
    output: Path = RunDir,
    source: str = typer.Option("auto", "--from", help="Pretrained model: 'auto' (the bundled model whose "
                               "activations best predict the target in a ridge probe cross-validated on the "
                               "training rows; formation energy unless another is clearly better), 'bundled' "
                               "(ElemNet on Materials Project formation energies), 'bundled:NAME' (see elemtl "
                               "datasets) or a run directory."),
    strategy: str = typer.Option("auto", "--strategy", help="auto | full | freeze:K | head | reinit | gradual; "
                                 "add +pa (e.g. full+pa) to train a Magpie physical-attribute input to the "
                                 "first layer too (a new one for a source without it; the bundled models read "
                                 "attributes already, and without +pa that input stays as pretrained). auto "
                                 "tries full and full+pa (also freeze:K, K = the first layer group, and reinit "
                                 "and reinit+pa, fresh weights, under 1,000 rows; head under 300) on the "
                                 "validation split and keeps the best, or a weight average of the pretrained "
                                 "starts when that validates better."),
    val: Optional[Path] = ValFile,
    val_fraction: float = ValFraction,
    test: Optional[Path] = TestFile,
    test_fraction: float = TestFraction,
    keep_head: Optional[bool] = typer.Option(None, "--keep-head/--new-head", help="Keep the pretrained output "
                                             "layer (same property) or start a new one (default: keep it, "
                                             "linearly calibrated, only when the source predicts the target "
                                             "with |r| ≥ 0.95)."),
    ensemble: int = typer.Option(3, "--ensemble", help="Average this many fine-tuned networks, each validated on "
                                 "its own seeded split (1: a single network)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Maximum epochs (default: from the data size, "
                                         "about 2,000 steps); gradual trains the output layer alone for "
                                         "max(2, epochs/10) epochs before them."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Batch size (default: rows/40, 32..256)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate (default: from how near the source "
                                       "is: 3e-4 when its calibrated output layer is kept or a ridge probe finds its "
                                       "deeper layers most predictive of the target, and for fresh weights (reinit); "
                                       "2e-3 when only its first layer is)."),
    patience: Optional[int] = typer.Option(None, "--patience", help="Early-stopping patience in epochs (default: "
                                         "20; networks from fresh weights, reinit, train at least 60 % of the epochs, "
                                         "then stop after 40 % of them without a better validation MAE)."),
    duplicates: str = typer.Option("auto", "--duplicates", help="auto | most-stable | mean | keep."),
    stability_col: Optional[str] = typer.Option(None, "--stability-col", help="Column marking the most stable "
                                                "polymorph."),
    seed: int = Seed,
    device: str = Device,
    overwrite: bool = Overwrite,
    formula_col: Optional[str] = FormulaCol,
    target_col: Optional[str] = TrainTargetCol,
    quiet: bool = Quiet,
) -> None:
    """Fine-tune the pretrained ElemNet on a small target property.

    Example: elemtl finetune my_property.csv -o runs/ft --test my_test.csv
    """
    from .finetune import FINETUNE_DEFAULTS
    from .finetune import finetune as run

    _at_least_one(epochs=epochs, batch_size=batch_size)
    if lr is not None and lr <= 0:  # the API's 0 means "from the output layer's start"
        raise InputError(f"--lr must be > 0, got {lr}")
    config = _fit_config(FINETUNE_DEFAULTS, epochs, batch_size, lr, patience, seed)
    run(data, output, source=source, strategy=strategy, val=val, test=test, val_fraction=val_fraction,
        test_fraction=test_fraction, keep_head=keep_head, members=ensemble, config=config, device=device,
        overwrite=overwrite, duplicates=duplicates, formula_col=formula_col, target_col=target_col,
        stability_col=stability_col, show_progress=not quiet, notices=True)  # notices: the run's summary lines too


@app.command()
@handles_errors
def predict(
    data: str = typer.Argument(..., help="Table or named dataset with formulas (a target column is optional)."),
    model: str = typer.Option("bundled", "--model", "-m", help="Run directory (pretrain, finetune or "
                              "extract-features), 'bundled', or 'bundled:NAME' (e.g. bundled:band-gap; see "
                              "elemtl datasets)."),
    output: Path = typer.Option(..., "--output", "-o", help="Predictions table (.csv, .csv.gz, .parquet)."),
    formula_col: Optional[str] = FormulaCol,
    target_col: Optional[str] = PredictTargetCol,
    device: str = Device,
) -> None:
    """Predict every row (input order): formula, the input's other columns, prediction, ensemble_std (an
    ensemble's spread), unseen_elements (elements absent from its training data) (+ target, error).

    Example: elemtl predict my_formulas.csv --model bundled -o predictions.csv
    """
    from .featurize import outlier_warning, rejected_path
    from .predict import predict as run
    from .predict import reliability_notes

    result = run(data, model, output, formula_col=formula_col, target_col=target_col, device=device)
    frame, featurized = result.table, result.featurized
    lines = [f"{plural(featurized.n_read, 'row')} read, {featurized.n_rejected} rejected, "
             f"{featurized.n_kept} predicted: {result.predictor.describes()} ({model}); wrote {output}"]
    if featurized.table.target_note():
        lines.append(featurized.table.target_note())
    unused = featurized.table.provenance.get("target_not_taken")
    why = featurized.table.provenance.get("target_not_taken_reason")
    if why is not None:  # a named dataset of another property
        lines.append(f"{data}: its target is not scored ({why}); --target-col "
                     f"{featurized.table.provenance.get('target')!r} scores the predictions against it")
    elif unused is not None:
        lines.append(f"{data}: column {unused!r} not taken as a target (no column is named 'target' or as the "
                     f"model's target, {result.predictor.target!r}); --target-col {unused!r} scores the "
                     "predictions against it")
    lines += reliability_notes(result)
    if outlier_warning(featurized):
        lines.append(outlier_warning(featurized))
    if len(result.unscored):
        first = result.unscored.iloc[0]
        lines.append(f"{plural(len(result.unscored), 'row')} with a target that is not a usable "
                     f"number: predicted, the cell kept as written, error left empty (first: line "
                     f"{first['line']}, {first['reason']})")
    if featurized.table.has_target:  # an input column named error is renamed, not scored
        import numpy as np

        err = frame["error"].to_numpy(dtype=float)
        ok = np.isfinite(err)
        if ok.any():
            lines.append(f"MAE against the input's target: {np.abs(err[ok]).mean():.4g} "
                         f"({plural(int(ok.sum()), 'row')} with a finite target; the model predicts "
                         f"{result.predictor.describes()})")
    if featurized.n_rejected:
        lines.append(f"rejected rows: {rejected_path(output)}")
    _echo_summary(lines)


def _register_extract_features() -> None:
    from .cli_features import extract_features_command

    app.command("extract-features")(handles_errors(extract_features_command))


_register_extract_features()


@app.command("compare-scratch")
@handles_errors
def compare_scratch(
    data: str = typer.Argument("expt-formation-enthalpy", help="Table or named dataset (default: the bundled "
                               "experimental formation enthalpies)."),
    output: Path = typer.Option(..., "--output", "-o", help="Output directory (results.json, report.md, plots)."),
    test: Optional[Path] = typer.Option(None, "--test", help="Held-out test file (default: a seeded hold-out "
                                        "per seed)."),
    methods: str = typer.Option(",".join(("tl-finetune", "tl-features", "sc-ef", "sc-pa", "pa-rf", "mean")),
                                "--methods", help="Comma-separated methods to compare."),
    seeds: int = typer.Option(3, "--seeds", help="Repeats of each method (different seeds; with no --test, "
                              "different splits)."),
    train_sizes: Optional[str] = typer.Option(None, "--train-sizes", help="Learning curve: comma-separated "
                                              "training fractions, e.g. 0.1,0.25,0.5,1.0."),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Hold-out fraction when no --test."),
    source: str = typer.Option("auto", "--from", help="Pretrained model for tl-finetune and tl-features: "
                               "auto (chosen per run from its training rows, as in finetune), bundled, "
                               "bundled:NAME or a run directory."),
    strategy: str = typer.Option("auto", "--strategy", help="Fine-tuning strategy for tl-finetune."),
    ensemble: int = typer.Option(3, "--ensemble", help="Networks averaged by each network method "
                                 "(tl-finetune, sc-ef, sc-pa)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epoch budget of every network "
                                         "(default: from the data size)."),
    device: str = Device,
    resume: bool = typer.Option(False, "--resume", help="Skip method/seed pairs already finished in OUTPUT."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a comparison already in OUTPUT."),
    formula_col: Optional[str] = FormulaCol,
    target_col: Optional[str] = CompareTargetCol,
    duplicates: str = typer.Option("auto", "--duplicates", help="auto | most-stable | mean | keep (as finetune's)."),
    stability_col: Optional[str] = typer.Option(None, "--stability-col", help="Column marking the most stable "
                                                "polymorph."),
    quiet: bool = Quiet,
) -> None:
    """Transfer vs from-scratch on one split, several seeds: a table, plots and report.md.

    Rejected rows go to OUTPUT/train.rejected.csv and OUTPUT/test.rejected.csv (line, formula, reason).
    Exit code 1 when a method failed (the others' results are still written).

    Example: elemtl compare-scratch my.csv --test my_test.csv -o out --seeds 3
    """
    from dataclasses import replace

    from rich.table import Table as RichTable

    from .compare import compare_scratch as run
    from .finetune import FINETUNE_DEFAULTS

    _at_least_one(epochs=epochs)
    config = replace(FINETUNE_DEFAULTS, epochs=epochs) if epochs is not None else FINETUNE_DEFAULTS
    sizes = None
    if train_sizes is not None:
        try:
            sizes = [float(v) for v in train_sizes.split(",")]
        except ValueError:
            raise InputError(f"--train-sizes {train_sizes!r}: give comma-separated fractions in (0, 1], "
                             "e.g. 0.1,0.25,0.5,1") from None
    results = run(data, output, test=test, methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
                  seeds=seeds, train_sizes=sizes, test_fraction=test_fraction, source=source, strategy=strategy,
                  members=ensemble, config=config, device=device, resume=resume, overwrite=overwrite,
                  formula_col=formula_col, target_col=target_col, duplicates=duplicates, stability_col=stability_col,
                  show_progress=not quiet, on_note=lambda line: _echo_summary([line]))
    covered = results["setup"]["seeds"]  # a --resume keeps the saved comparison's seeds too
    what = results.get("target") or {}
    unit = f" ({what['unit']})" if what.get("unit") else ""
    name = what.get("name") or "target"
    of = "" if name == "target" else f" of {name}"
    table = RichTable(title=f"test MAE{of}{unit}, {plural(covered, 'seed')}")
    for col in ("method", "test MAE", "± sample std", "RMSE", "R²", "seconds"):
        table.add_column(col)
    for name, e in results["methods"].items():
        if e["test_mae_mean"] is None:
            table.add_row(name, "failed", str(e.get("error"))[:60], "", "", f"{e['seconds']:.0f}")
        else:
            spread = f"{e['test_mae_std']:.2g}" if e.get("test_mae_std") is not None and covered > 1 else "—"
            r2 = "n/a" if e["test_r2_mean"] is None else f"{e['test_r2_mean']:.3f}"
            table.add_row(name, f"{e['test_mae_mean']:.4g}", spread, f"{e['test_rmse_mean']:.4g}", r2,
                          f"{e['seconds']:.0f}")
    console.print(table)
    from .report import headline

    said = headline(results["verdict"])
    _echo_summary([*([said] if said else []), f"report: {output / 'report.md'}"])
    if results["failed"]:
        _fail(f"{plural(len(results['failed']), 'method')} failed: "
              + ", ".join(f"{m} ({results['methods'][m].get('error')})" for m in results["failed"])
              + f"; tracebacks in {output / 'runs'}/METHOD/.../error.txt", 1)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="elemtl")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
