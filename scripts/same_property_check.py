"""The same property from another database: OQMD formation enthalpies fine-tuned from the MP model.

A seeded sample of `../shared/data/source/oqmd_formation_enthalpy_part.csv.gz` (mostly hypothetical
intermetallics, unlike Materials Project's compounds) as a new user's table: N training rows and 1,000
test rows. Scores the bundled formation-energy model as it is (`predict`), then `finetune` with every
default (`auto` decides whether this is the source's property from the correlation of its predictions),
then the same with the output layer forced kept (`--keep-head`, the near-source rate).

Usage: python scripts/same_property_check.py [--train-rows 5000] [--seed 7] [--out same_property.json]
Needs ../shared/data (exits with a message when it is absent).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

OQMD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "source" / "oqmd_formation_enthalpy_part.csv.gz"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7, help="seed of the sample (the runs use their default seed)")
    parser.add_argument("--out", default="same_property.json")
    args = parser.parse_args()
    if not OQMD.is_file():
        print(f"{OQMD} is absent (the shared data folder is only on the project machine)", file=sys.stderr)
        return 1
    from elemnet_tl.finetune import finetune
    from elemnet_tl.predict import predict

    work = Path(tempfile.mkdtemp(prefix="elemtl_same_"))
    try:
        frame = pd.read_csv(OQMD)
        order = np.random.default_rng(args.seed).permutation(len(frame))
        train, test = work / "train.csv", work / "test.csv"
        frame.iloc[order[:args.train_rows]].to_csv(train, index=False)
        frame.iloc[order[args.train_rows:args.train_rows + 1000]].to_csv(test, index=False)
        source = predict(test, "bundled").table
        rows = {"train_rows": args.train_rows, "sample_seed": args.seed,
                "bundled_as_is": {"test_mae": float(source["error"].abs().mean()),
                                  "r": float(np.corrcoef(source["prediction"], source["target"])[0, 1])}}
        for name, keep_head in (("finetune_default", None), ("finetune_keep_head", True)):
            t0 = time.perf_counter()
            run = finetune(train, work / name, test=test, keep_head=keep_head, show_progress=False,
                           **({"source": "bundled"} if keep_head else {}))
            card = run.card
            rows[name] = {"test_mae": card["metrics"]["test_mae"], "strategy": card["strategy"]["name"],
                          "head": card["head"]["reason"], "rate": card["learning_rate"]["reason"],
                          "seconds": round(time.perf_counter() - t0, 1)}
            print(name, json.dumps(rows[name]), flush=True)
        Path(args.out).write_text(json.dumps(rows, indent=1))
        print(json.dumps(rows, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
