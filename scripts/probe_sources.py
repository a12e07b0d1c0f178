"""What `--from auto` chooses on each development set: every bundled model's ridge-probe CV MAE, the layer
each probe prefers (a layer deeper than the first marks a near source: `finetune` then uses the smaller
rate) and the choice with its reason (`elemnet_tl.sources.choose_source` on the whole training file).

Usage: python scripts/probe_sources.py [--sets mbj_bandgap,matbench_jdft2d,expt-formation-enthalpy]
Needs ../shared/data (sets whose files are absent are skipped with a message; the bundled
expt-formation-enthalpy always runs).
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ROOT.parent / "shared" / "data" / "targets"


BUNDLED_SET = "expt-formation-enthalpy"


def set_file(name: str) -> Path | str | None:
    """The training table of a development set (JARVIS train file, matbench file, or the bundled
    experimental enthalpies); None when its file is not in ../shared."""
    for path in (TARGETS / "jarvis_tl" / name / "train.csv.gz", TARGETS / f"{name}.csv.gz"):
        if path.is_file():
            return path
    return name if name == BUNDLED_SET else None


def main() -> int:
    from elemnet_tl.featurize import load_and_prepare
    from elemnet_tl.sources import choose_source

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = sorted(p.name for p in (TARGETS / "jarvis_tl").glob("*")) + sorted(
        p.name.removesuffix(".csv.gz") for p in TARGETS.glob("matbench_*.csv.gz")) + [BUNDLED_SET]
    parser.add_argument("--sets", default=",".join(default))
    args = parser.parse_args()
    print("| set | rows | " + " | ".join(["probe MAE per bundled model", "best layer per model", "chosen", "reason"])
          + " |")
    print("|---|---|---|---|---|---|")
    for name in args.sets.split(","):
        source = set_file(name)
        if source is None:
            print(f"skip {name}: its data are not in ../shared/data")
            continue
        data = load_and_prepare(source, None, None, "auto")
        chosen, record, fitted = choose_source(data.fractions, data.target, 0)
        probes = ", ".join(f"{s.split(':')[-1]} {v:.4g}" for s, v in record["probe"].items())
        layers = ", ".join(f"{s.split(':')[-1]} {t.layers_[0]}" for s, t in fitted.items())
        print(f"| {name} | {data.n_kept} | {probes} | {layers} | {chosen.split(':')[-1]} | {record['reason']} |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
