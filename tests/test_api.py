"""The package's Python API: every exported name is the documented object, in a fresh interpreter too."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pandas as pd
import pytest

import elemnet_tl

FUNCTIONS = ("featurize", "finetune", "predict", "pretrain", "compare_scratch", "extract_features", "load_table")


def test_exported_functions_are_functions_not_modules():
    for name in FUNCTIONS:
        assert inspect.isfunction(getattr(elemnet_tl, name)), name
    assert set(elemnet_tl.__all__) >= set(FUNCTIONS)


def test_readme_import_line_in_a_fresh_interpreter():
    # a submodule imported first (as user code often does) must not shadow the function of the same name
    code = ("from elemnet_tl.finetune import FINETUNE_DEFAULTS\n"
            "from elemnet_tl import featurize, finetune, compare_scratch, predict, pretrain\n"
            "import inspect, elemnet_tl\n"
            "from elemnet_tl.compare import run_method\n"
            "assert all(inspect.isfunction(f) for f in (featurize, finetune, compare_scratch, predict, pretrain))\n"
            "assert all(inspect.isfunction(getattr(elemnet_tl, n)) for n in ('featurize', 'finetune', 'predict'))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_dataframe_instead_of_a_path_is_one_line(tmp_path):
    """The API takes paths and dataset names; a DataFrame (whose str is the whole table) is named, once."""
    from elemnet_tl import featurize, predict
    from elemnet_tl.errors import InputError

    frame = pd.DataFrame({"formula": ["NaCl", "KCl"], "target": [1.0, 2.0]})
    (tmp_path / "o.csv").write_text("kept")
    for call in (lambda: predict(frame, "bundled", tmp_path / "o.csv"), lambda: featurize(frame, tmp_path / "o.csv")):
        with pytest.raises(InputError, match=r"^data must be a file path or a named dataset, got a DataFrame: "
                                             r"write it with df.to_csv") as err:
            call()
        assert "\n" not in str(err.value)
    assert (tmp_path / "o.csv").read_text() == "kept"
