"""elemnet_tl: transfer learning of materials properties from chemical composition with ElemNet.

Python API (the CLI calls these)::

    from elemnet_tl import featurize, finetune, compare_scratch
    frame, report = featurize("expt-formation-enthalpy")
    run = finetune("my_property.csv", "runs/ft", test="my_test.csv")
"""

from .compare import compare_scratch
from .compositions import dedup, parse_formulas
from .datasets import Table, load_table
from .elements import ELEMENTS
from .errors import InputError
from .features import PretrainedFeatures, extract_features
from .featurize import Featurized, featurize, load_and_prepare
from .finetune import finetune
from .model import DEFAULT_ARCH, ElemNet
from .predict import predict
from .pretrain import pretrain
from .training import FitConfig, fit

__all__ = [
    "DEFAULT_ARCH", "ELEMENTS", "ElemNet", "Featurized", "FitConfig", "InputError", "PretrainedFeatures",
    "Table", "compare_scratch", "dedup", "extract_features", "featurize", "finetune", "fit",
    "load_and_prepare", "load_table", "parse_formulas", "predict", "pretrain",
]
__version__ = "0.1.0"
