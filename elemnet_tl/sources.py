"""``--from auto``: choose the pretrained source model (bundled formation energy, band gap, ...) by validation.

Each bundled source is fine-tuned once with the ``full`` strategy (one network, the run's own seeded
validation split and recipe); the source with the lowest validation MAE is the one the real run starts
from (the winning probe is not trained again: it is that run's ``full`` network). The choice and
every probe's validation MAE go into ``card.json`` under ``source_choice``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from .checkpoint import BUNDLED_MODELS, CARD_FILE
from .io import write_json
from .workflow import RunResult

AUTO = "auto"


def is_auto(source: str | Path) -> bool:
    return str(source).strip().lower() == AUTO


def bundled_sources() -> list[str]:
    """``--from`` values of every bundled model (``bundled:NAME``)."""
    return [f"bundled:{name}" for name in BUNDLED_MODELS]


def choose_source(probe: Callable[[str, Path], RunResult]) -> tuple[str, dict]:
    """Run ``probe(source, run_dir)`` for each bundled source; returns the best one and the card record."""
    sources = bundled_sources()
    if len(sources) == 1:
        return sources[0], {"name": sources[0], "reason": "the only bundled model", "probe": {}}
    scores: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="elemtl_source_") as tmp:
        for i, source in enumerate(sources):
            scores[source] = float(probe(source, Path(tmp) / f"probe{i}").metrics["val_mae"])
    best = min(scores, key=scores.__getitem__)
    ranked = ", ".join(f"{s} {v:.4g}" for s, v in sorted(scores.items(), key=lambda kv: kv[1]))
    reason = f"lowest validation MAE of a full fine-tune from each bundled model: {ranked}"
    return best, {"name": best, "reason": reason, "probe": scores}


def record_choice(result: RunResult, choice: dict) -> RunResult:
    """Add ``source_choice`` to the run's card (file and object)."""
    result.card["source_choice"] = choice
    write_json(result.run_dir / CARD_FILE, result.card)
    return result
