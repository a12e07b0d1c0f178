"""The ``elemtl`` command line: thin wrappers over the Python API.

Exit codes: 0 success, 2 bad input (one line naming file, column or row and the reason), 1 internal error.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Callable, Optional

import typer

from .errors import InputError
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


def _fail(message: str, code: int) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


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
            _fail("interrupted (a training run can continue with --resume)", 130)
        except Exception as exc:  # last resort: one line, traceback only on request
            if os.environ.get("ELEMTL_DEBUG"):
                raise
            _fail(f"internal error: {type(exc).__name__}: {exc} (set ELEMTL_DEBUG=1 for the traceback)", 1)

    return wrapper


# -- shared options --------------------------------------------------------------------------------
FormulaCol = typer.Option(None, "--formula-col", help="Formula column (default: found by name: formula, "
                          "composition, formula_pretty, pretty_formula, compound).")
TargetCol = typer.Option(None, "--target-col", help="Target column (default: 'target', or the only other "
                         "numeric column).")
Seed = typer.Option(0, "--seed", help="One seed for the split, initialisation and shuffling.")
Device = typer.Option("auto", "--device", help="auto (CUDA when present), cpu or cuda.")
Quiet = typer.Option(False, "--quiet", "-q", help="No progress bar.")


def _echo_summary(lines: list[str]) -> None:
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)


@app.command()
@handles_errors
def datasets() -> None:
    """List the named datasets (usable wherever a DATA file is expected).

    Example: elemtl datasets
    """
    from rich.table import Table as RichTable

    from .named import list_datasets

    table = RichTable(title="named datasets")
    for col in ("name", "rows", "target", "unit", "offline"):
        table.add_column(col)
    for d in list_datasets():
        target = d.get("target") or ("choose with --target-col: " + ", ".join(d.get("targets") or []))
        table.add_row(d["name"], str(d.get("rows") or "?"), str(target), str(d.get("unit") or ""),
                      "yes" if d.get("offline") else "download")
    console.print(table)


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

    Rejected rows go to OUTPUT's stem + '.rejected.csv' (line, formula, reason).

    Example: elemtl featurize expt-formation-enthalpy -o features.csv --pa
    """
    from .featurize import featurize as run, rejected_path

    frame, result = run(data, output, duplicates=duplicates, stability_col=stability_col, pa=pa,
                        formula_col=formula_col, target_col=target_col)
    lines = [result.summary(), f"wrote {output} ({len(frame)} rows x {frame.shape[1]} columns)"]
    if result.n_rejected:
        lines.append(f"rejected rows: {rejected_path(output)}")
    _echo_summary(lines)


def _fit_config(defaults, epochs, batch_size, lr, patience, seed):
    from dataclasses import replace

    return replace(defaults, **{k: v for k, v in dict(epochs=epochs, batch_size=batch_size, lr=lr,
                                                       patience=patience, seed=seed).items() if v is not None})


def _print_run(result, extra: list[str] | None = None) -> None:
    m = result.metrics
    parts = [f"best validation MAE {m['val_mae']:.4g} {result.info.unit}".rstrip()]
    if m.get("test_mae") is not None:
        parts.append(f"test MAE {m['test_mae']:.4g}, RMSE {m['test_rmse']:.4g}, R² {m['test_r2']:.3f}")
    _echo_summary([*(extra or []), "; ".join(parts), f"run directory: {result.run_dir}"])


@app.command()
@handles_errors
def pretrain(
    data: str = typer.Argument(..., help="Training table or named dataset (a large DFT set)."),
    output: Path = typer.Option(..., "--output", "-o", help="Run directory to create."),
    val: Optional[Path] = typer.Option(None, "--val", help="Validation file (default: a seeded hold-out)."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Hold-out fraction when no --val."),
    test: Optional[Path] = typer.Option(None, "--test", help="Test file, scored once at the end (never deduplicated)."),
    test_fraction: float = typer.Option(0.0, "--test-fraction", help="Instead of --test: hold out this seeded "
                                        "fraction of the data as the test set."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Maximum epochs [default: 120]."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Batch size [default: 512]."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate of AdamW [default: 1e-3]."),
    patience: Optional[int] = typer.Option(None, "--patience", help="Early-stopping patience in epochs "
                                           "[default: 30]; 0 disables."),
    arch: str = typer.Option("1024x4-512x3-256x3-128x3-64x2-32x1", "--arch", help="Hidden layers, width x count."),
    dropout: float = typer.Option(0.0, "--dropout", help="Dropout after each hidden layer (ElemNet study: none)."),
    duplicates: str = typer.Option("most-stable", "--duplicates", help="most-stable | mean | keep | auto."),
    stability_col: Optional[str] = typer.Option(None, "--stability-col", help="Column marking the most stable "
                                                "polymorph (default: the target)."),
    seed: int = Seed,
    device: str = Device,
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in OUTPUT."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a finished run in OUTPUT."),
    formula_col: Optional[str] = FormulaCol,
    target_col: Optional[str] = TargetCol,
    quiet: bool = Quiet,
) -> None:
    """Pretrain ElemNet on a large DFT set (duplicates: lowest value per composition).

    Example: elemtl pretrain ../shared/data/source/matbench_mp_e_form.csv.gz -o runs/mp --epochs 100
    """
    from .pretrain import PRETRAIN_DEFAULTS, pretrain as run

    config = _fit_config(PRETRAIN_DEFAULTS, epochs, batch_size, lr, patience, seed)
    result = run(data, output, val=val, test=test, val_fraction=val_fraction, test_fraction=test_fraction, arch=arch, dropout=dropout,
                 config=config, device=device, resume=resume, overwrite=overwrite, duplicates=duplicates,
                 formula_col=formula_col, target_col=target_col, stability_col=stability_col,
                 show_progress=not quiet)
    _print_run(result)


@app.command()
@handles_errors
def predict(
    data: str = typer.Argument(..., help="Table or named dataset with formulas (a target column is optional)."),
    model: str = typer.Option("bundled", "--model", "-m", help="Run directory, or 'bundled'."),
    output: Path = typer.Option(..., "--output", "-o", help="Predictions table (.csv, .csv.gz, .parquet)."),
    formula_col: Optional[str] = FormulaCol,
    target_col: Optional[str] = TargetCol,
    device: str = Device,
) -> None:
    """Predict every row (input order): formula, prediction (+ target, error when the input has a target).

    Example: elemtl predict my_formulas.csv --model bundled -o predictions.csv
    """
    from .featurize import rejected_path
    from .predict import predict as run

    frame, featurized = run(data, model, output, formula_col=formula_col, target_col=target_col, device=device)
    lines = [f"{featurized.n_read} rows read, {featurized.n_rejected} rejected, "
             f"{featurized.n_kept} predicted; wrote {output}"]
    if "error" in frame:
        lines.append(f"MAE against the input's target: {frame['error'].abs().mean():.4g}")
    if featurized.n_rejected:
        lines.append(f"rejected rows: {rejected_path(output)}")
    _echo_summary(lines)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="elemtl")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
