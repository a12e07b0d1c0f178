"""elemnet_tl: transfer learning of materials properties from chemical composition with ElemNet.

Python API (the CLI calls these)::

    from elemnet_tl import featurize, finetune, compare_scratch
    frame, report = featurize("expt-formation-enthalpy")
    run = finetune("my_property.csv", "runs/ft", test="my_test.csv")

Most names are imported on first use. The four functions named like their own module (``featurize``,
``finetune``, ``predict``, ``pretrain``) are imported with the package: a lazy import of such a module
would rebind the package's attribute to the module, and ``from elemnet_tl import finetune`` would then
give the module instead of the function.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from .featurize import featurize as featurize  # noqa: E402  (after __version__: submodules may read it)
from .finetune import finetune as finetune  # noqa: E402
from .predict import predict as predict  # noqa: E402
from .pretrain import pretrain as pretrain  # noqa: E402

_EXPORTS = {
    "compare_scratch": "compare", "dedup": "compositions", "parse_formulas": "compositions",
    "Table": "datasets", "load_table": "datasets", "ELEMENTS": "elements", "InputError": "errors",
    "PretrainedFeatures": "features", "extract_features": "feature_runs", "Featurized": "featurize",
    "load_and_prepare": "featurize", "DEFAULT_ARCH": "model", "ElemNet": "model", "FitConfig": "training",
    "fit": "training",
}
__all__ = sorted([*_EXPORTS, "featurize", "finetune", "predict", "pretrain"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'elemnet_tl' has no attribute {name!r}")
