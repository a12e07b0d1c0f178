"""elemnet_tl: transfer learning of materials properties from chemical composition with ElemNet.

Python API (the CLI calls these)::

    from elemnet_tl import featurize, finetune, compare_scratch
    frame, report = featurize("expt-formation-enthalpy")
    run = finetune("my_property.csv", "runs/ft", test="my_test.csv")

Names are imported on first use, so ``import elemnet_tl`` (and the CLI's start) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "compare_scratch": "compare", "dedup": "compositions", "parse_formulas": "compositions",
    "Table": "datasets", "load_table": "datasets", "ELEMENTS": "elements", "InputError": "errors",
    "PretrainedFeatures": "features", "extract_features": "feature_runs", "Featurized": "featurize",
    "featurize": "featurize", "load_and_prepare": "featurize", "finetune": "finetune",
    "DEFAULT_ARCH": "model", "ElemNet": "model", "predict": "predict", "pretrain": "pretrain",
    "FitConfig": "training", "fit": "training",
}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'elemnet_tl' has no attribute {name!r}")
