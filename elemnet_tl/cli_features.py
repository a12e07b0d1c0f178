"""``elemtl extract-features``: the pretrained network as a feature extractor (registered in cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .errors import plural
from .progress import console


def target_of_other_files(options: str) -> str:
    """The --target-col help's sentence on the ``options`` files (``--val/--test``)."""
    return (f" A {options} file uses the same column names; one that names its target otherwise has it found the "
            "same way, and the run says so.")


def extract_features_command(
    data: str = typer.Argument(..., help="Training table or named dataset (formula + target)."),
    output: Path = typer.Option(..., "--output", "-o", help="Directory to create: features.parquet, card.json, "
                                "regressor.json + regressor.npz."),
    source: str = typer.Option("auto", "--from", help="Pretrained network: 'auto' (the bundled model whose "
                               "chosen layer(s) a ridge probe predicts best in cross-validation; formation "
                               "energy unless another is clearly better), 'bundled' (= bundled:formation-energy), "
                               "bundled:NAME (e.g. bundled:band-gap), a run directory or a .safetensors file. "
                               "Only the layers the "
                               "features need are copied into OUTPUT (a bundled model is recorded by name), "
                               "so OUTPUT keeps working if the source moves."),
    layers: str = typer.Option("auto", "--layers", help="auto | N[,M...] | NAME[,NAME...] (hidden layers 1 ... 16 "
                               "= fc1 ... fc16, and out). auto "
                               "compares fc1 and the last layer of each width group (at most 6) with a ridge "
                               "probe in 5-fold cross-validation on the training data and keeps the best."),
    regressor: str = typer.Option("auto", "--regressor", help="auto | rf | gbr | ridge | svr | knn | none. auto "
                                  "keeps the one with the lowest cross-validated MAE; hyper-parameters are always "
                                  "chosen by cross-validation; none writes the features only."),
    with_pa: bool = typer.Option(False, "--with-pa", help="Append Magpie physical attributes to the activations "
                                 "(missing values -> training median)."),
    test: Optional[Path] = typer.Option(None, "--test", help="Test file, scored once at the end (never "
                                        "deduplicated)."),
    duplicates: str = typer.Option("auto", "--duplicates", help="auto | most-stable | mean | keep (training "
                                   "data only)."),
    seed: int = typer.Option(0, "--seed", help="One seed for the cross-validation folds and the regressor."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu or cuda (forward pass)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace what OUTPUT holds: an earlier "
                                   "extraction, or a run of another command."),
    formula_col: Optional[str] = typer.Option(None, "--formula-col", help="Formula column (default: found by "
                                              "name: formula, composition, formula_pretty, pretty_formula, "
                                              "compound)."),
    target_col: Optional[str] = typer.Option(None, "--target-col", help="Target column (default: 'target', or "
                                             "the only other numeric column, ids aside)."
                                             + target_of_other_files("--test")),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress messages (the data summary, "
                               "warnings and results still print)."),
) -> None:
    """Pretrained ElemNet activations as features, plus a scikit-learn regressor chosen by cross-validation.

    The directory works with `elemtl predict DATA --model OUTPUT`, also after the source network is moved
    or OUTPUT is copied elsewhere; card.json reports the cross-validated MAE.

    Example: elemtl extract-features my_property.csv -o runs/feat --test my_test.csv
    """
    from .feature_runs import extract_features

    result = extract_features(data, output, source=source, layers=layers, regressor=regressor, with_pa=with_pa,
                              test=test, seed=seed, formula_col=formula_col, target_col=target_col,
                              duplicates=duplicates, device=device, show_progress=not quiet, overwrite=overwrite,
                              notices=True)
    card = result.card
    unit = (card.get("target") or {}).get("unit") or ""
    sel = card["selection"]
    feats = card["features"]
    lines = [f"layer {','.join(result.layers)} — {sel['layer']['reason']}; "
             f"{feats['n_used']} of {feats['n_columns']} feature columns vary"
             + (" (activations + physical attributes)" if feats["with_pa"] else "")]
    m = result.metrics
    if result.regressor != "none":
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in card["regressor"]["params"].items())
        lines.append(f"regressor {result.regressor} ({params}) — {card['regressor']['reason']}")
        parts = [f"CV MAE {m['val_mae']:.4g} {unit}".rstrip() + f" — {sel['cv']}"]
        if m.get("test_mae") is not None:
            parts.append(f"test MAE {m['test_mae']:.4g}, RMSE {m['test_rmse']:.4g}, R² {m['test_r2']:.3f}")
        lines.append("; ".join(parts))
    else:
        lines.append("no regressor (--regressor none): features only")
    lines.append(f"wrote {result.out_dir / 'features.parquet'} ({plural(card['split']['n_train'], 'row')}); "
                 f"directory: {result.out_dir} ({card['timing']['total_s']:.1f} s)")
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)
