"""elemnet_tl: transfer learning of materials properties from chemical composition with ElemNet.

Python API (the CLI calls these)::

    from elemnet_tl import featurize, finetune, compare_scratch
    frame, report = featurize("expt-formation-enthalpy")
    run = finetune("my_property.csv", "runs/ft", test="my_test.csv")

The four functions named like their own module (``featurize``, ``finetune``, ``predict``,
``pretrain``) are imported with the package (so ``import elemnet_tl`` loads torch and pandas, about a
second or two): imported lazily, such a module would rebind the package's attribute to itself, and
``from elemnet_tl import finetune`` would give the module. As in any package that does this,
``elemnet_tl.finetune`` is the function; reach the module with ``from elemnet_tl.finetune import ...``.
The other names are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

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


# After everything above: submodules may read __version__ or a lazy name while they load.
from .featurize import featurize as featurize  # noqa: E402
from .finetune import finetune as finetune  # noqa: E402
from .predict import predict as predict  # noqa: E402
from .pretrain import pretrain as pretrain  # noqa: E402
