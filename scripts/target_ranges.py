"""How far the farthest target value of each development/source set lies from its median, in units of the
10-90 % range that `featurize.outlier_warning` uses (it warns beyond `OUTLIER_RANGES`), and for a positive
target how many decades its 10-90 % range spans (`featurize.skew_warning` hints beyond `SKEW_DECADES`).

Usage: python scripts/target_ranges.py    (needs ../shared/data; skips with a message when absent)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def main() -> int:
    from elemnet_tl.featurize import OUTLIER_RANGES, SKEW_DECADES, load_and_prepare

    if not DATA.is_dir():
        print(f"skipped: {DATA} is absent")
        return 0
    files = sorted(DATA.glob("targets/jarvis_tl/*/train.csv.gz")) + sorted(DATA.glob("targets/*.csv.gz")) + \
        sorted(DATA.glob("source/*.csv.gz"))
    worst, widest = 0.0, 0.0
    for path in files:
        target = load_and_prepare(path, duplicates="keep").target
        median = np.median(target)
        spread = np.percentile(target, 90, method="lower") - np.percentile(target, 10, method="higher")
        ratio = float(np.abs(target - median).max() / spread) if spread > 0 else float("inf")
        worst = max(worst, ratio)
        decades = ""
        if (target > 0).all():  # as skew_warning computes it
            span = float(np.log10(np.percentile(target, 90) / np.percentile(target, 10)))
            widest = max(widest, span)
            decades = f"; positive, its 10-90 % range spans {span:.2f} decades"
        print(f"{path.relative_to(DATA)}: {len(target)} rows, farthest value {ratio:.1f} ranges from the median"
              f"{decades}")
    print(f"largest: {worst:.1f} ranges (warning threshold: {OUTLIER_RANGES}); widest positive target: "
          f"{widest:.2f} decades (hint threshold: {SKEW_DECADES})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
