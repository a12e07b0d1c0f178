"""Would learned element embeddings help the pretrained model? A prototype, not a tool option.

Pretrains the `--pa` model on a seeded subsample of Materials Project formation energies twice per seed:
as the bundled recipe does (Magpie attributes), and with statistics of matminer's matscholar element
embeddings (200-dimensional, Tshitoyan et al. 2019: the fraction-weighted mean, minimum, maximum and mean
absolute deviation, 800 more columns) appended to the attributes. Both read the same split
(`--test-fraction 0.1`, seed + 1) and train the same epochs; prints one JSON line per run and the paired
test-MAE differences.

Usage: python scripts/probe_embedding_attributes.py [--rows 25000] [--epochs 40] [--seeds 0,1,2]
       [--variants base,matscholar] [--work DIR]
Needs ../shared/data/source/matbench_mp_e_form.csv.gz (skips with a message when it is absent).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT.parent / "shared" / "data" / "source" / "matbench_mp_e_form.csv.gz"


def matscholar_statistics():
    """A function of fractions (n, 86) -> (n, 800): weighted mean, min, max, mean |deviation| of the
    embeddings of the elements present (elements without an embedding count as zeros)."""
    import matminer

    from elemnet_tl.elements import ELEMENTS

    table = json.loads((Path(matminer.__file__).parent / "utils" / "data_files" / "matscholar_els.json").read_text())
    emb = np.array([table.get(e, [0.0] * 200) for e in ELEMENTS], dtype=np.float64)

    def stats(fractions: np.ndarray) -> np.ndarray:
        f = np.asarray(fractions, dtype=np.float64)
        present = (f > 0)[:, :, None]
        per_row = np.where(present, emb[None], np.nan)
        mean = f @ emb
        deviation = np.einsum("ne,ned->nd", f, np.abs(np.nan_to_num(per_row) - mean[:, None, :]))
        return np.hstack([mean, np.nanmin(per_row, axis=1), np.nanmax(per_row, axis=1), deviation])

    return stats


def use_embeddings() -> None:
    """Append the embedding statistics to every physical-attribute matrix this process computes."""
    import elemnet_tl.attributes as attributes
    import elemnet_tl.physical as physical

    magpie, extra = physical.physical_attributes, matscholar_statistics()
    n = attributes.attribute_count() + 800
    physical.physical_attributes = lambda f: np.hstack([magpie(f), extra(f)])
    attributes.attribute_count = lambda: n


def run(variant: str, seed: int, data: Path, epochs: int, out: Path) -> dict:
    from elemnet_tl.pretrain import PRETRAIN_DEFAULTS, pretrain

    start = time.perf_counter()
    config = replace(PRETRAIN_DEFAULTS, epochs=epochs, seed=seed, patience=epochs)
    pretrain(data, out, test_fraction=0.1, config=config, attributes=True, show_progress=False, notices=False,
             device="cpu", overwrite=True)
    card = json.loads((out / "card.json").read_text())
    return {"variant": variant, "seed": seed, "epochs": epochs, **card["metrics"],
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=25000)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variants", default="base,matscholar")
    parser.add_argument("--work", type=Path, default=Path("runs/embedding_probe"))
    parser.add_argument("--variant-in-process", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not SOURCE.is_file():
        print(f"skipped: {SOURCE} is absent (the shared data folder is only on the project machine)")
        return
    import pandas as pd

    args.work.mkdir(parents=True, exist_ok=True)
    data = args.work / f"mp_{args.rows}.csv"
    if not data.is_file():
        pd.read_csv(SOURCE).sample(n=args.rows, random_state=123).to_csv(data, index=False)
    if args.variant_in_process:  # one variant per process: the embeddings patch the attribute functions
        variant, seed = args.variant_in_process.split(":")
        if variant == "matscholar":
            use_embeddings()
        print(json.dumps(run(variant, int(seed), data, args.epochs, args.work / f"{variant}_{seed}")), flush=True)
        return
    import subprocess

    results = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for variant in args.variants.split(","):
            done = subprocess.run([sys.executable, __file__, "--rows", str(args.rows), "--epochs", str(args.epochs),
                                   "--work", str(args.work), "--variant-in-process", f"{variant}:{seed}"],
                                  capture_output=True, text=True, env=os.environ.copy(), check=True)
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), flush=True)
    by = {(r["variant"], r["seed"]): r["test_mae"] for r in results}
    seeds = sorted({r["seed"] for r in results})
    diffs = [by[("matscholar", s)] - by[("base", s)] for s in seeds if ("matscholar", s) in by and ("base", s) in by]
    if diffs:
        spread = np.std(diffs, ddof=1) if len(diffs) > 1 else 0.0
        print(f"matscholar - base, test MAE: {np.mean(diffs):+.4f} ± {spread:.4f} "
              f"(per seed {', '.join(f'{d:+.4f}' for d in diffs)})")


if __name__ == "__main__":
    main()
