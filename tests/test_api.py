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


def test_api_arguments_of_the_wrong_kind_get_one_line(tmp_path, source_dir):
    """What a notebook user passes by mistake: tables as --test, result objects as models, strings for numbers."""
    import numpy as np
    from conftest import BAND_GAPS

    from elemnet_tl.errors import InputError
    from elemnet_tl.predict import predict_fractions

    frame = pd.read_csv(BAND_GAPS)
    calls = {
        "test must be a file path": lambda: elemnet_tl.finetune(BAND_GAPS, tmp_path / "a", test=frame),
        "test must be a file path or a named dataset, got a DataFrame: write it":
            lambda: elemnet_tl.compare_scratch(BAND_GAPS, tmp_path / "b", test=frame),
        "--seeds must be a whole number, got '2'": lambda: elemnet_tl.compare_scratch(BAND_GAPS, tmp_path / "c",
                                                                                       seeds="2"),
        "--train-sizes must be fractions": lambda: elemnet_tl.compare_scratch(BAND_GAPS, tmp_path / "d",
                                                                              train_sizes="half"),
        "name the same fraction": lambda: elemnet_tl.compare_scratch(BAND_GAPS, tmp_path / "e",
                                                                     train_sizes=[0.1, 0.1000001]),
        "model must be a run directory": lambda: elemnet_tl.predict(BAND_GAPS, model=type("R", (), {"run_dir": 1})()),
        "sum to 1 per row (row 0 sums to 5": lambda: predict_fractions(
            "bundled", np.eye(86)[[0]] * 5),
    }
    for expected, call in calls.items():
        with pytest.raises(InputError) as error:
            call()
        assert expected in str(error.value) and "\n" not in str(error.value), (expected, str(error.value))
    assert not any(tmp_path.iterdir())  # refused before anything was written
    # numbers and strings where lists are expected are read as --train-sizes and --layers read them
    from elemnet_tl.compare import _sizes_argument
    from elemnet_tl.features import parse_layers
    from elemnet_tl.model import ElemNet

    assert _sizes_argument("0.5,1") == [0.5, 1.0] and _sizes_argument(0.5) == [0.5]
    net = ElemNet()
    assert parse_layers(4, net) == ["fc4"] and parse_layers("7,4", net) == ["fc4", "fc7"]
    assert parse_layers(["fc7", 16], net) == ["fc7", "fc16"]
    with pytest.raises(InputError, match="'auto' chooses one layer"):
        parse_layers("auto,fc3", net)
    assert parse_layers(["auto"], net) is None
    with pytest.raises(InputError, match="no such layer"):
        parse_layers("²", net)  # a digit to str.isdigit, not a layer number
    from elemnet_tl.features import check_fractions

    with pytest.raises(InputError, match="non-negative: row 0 has -0.5 for Li"):
        check_fractions(np.eye(86)[[0]] * 1.5 - 0.5 * np.eye(86)[[1]])
    assert check_fractions(np.round(np.eye(86)[[0, 1, 2]].sum(0, keepdims=True) / 3, 3)).shape == (1, 86)


def test_a_run_result_is_taken_where_a_run_directory_is(tmp_path):
    """finetune(..., source=run) and extract_features(..., source=run) failed with an OS error (the object's
    printout taken as a file name); pretrain(init=run) printed 2,500 characters; predict(model=features) said
    only the class name."""
    from dataclasses import replace

    from conftest import BAND_GAPS

    from elemnet_tl.checkpoint import load_model
    from elemnet_tl.finetune import FINETUNE_DEFAULTS
    from elemnet_tl.pretrain import PRETRAIN_DEFAULTS

    quick = dict(device="cpu", show_progress=False)
    source = elemnet_tl.pretrain(BAND_GAPS, tmp_path / "pre", arch="16x2-8x1",
                                 config=replace(PRETRAIN_DEFAULTS, epochs=1, batch_size=16), **quick)
    again = elemnet_tl.pretrain(BAND_GAPS, tmp_path / "pre2", init=source,
                                config=replace(PRETRAIN_DEFAULTS, epochs=1, batch_size=16), **quick)
    run = elemnet_tl.finetune(BAND_GAPS, tmp_path / "ft", source=again, strategy="full", members=1,
                              config=replace(FINETUNE_DEFAULTS, epochs=1, batch_size=16), **quick)
    assert run.card["source_model"]["path"] == str(load_model(tmp_path / "pre2").path)
    features = elemnet_tl.extract_features(BAND_GAPS, tmp_path / "fx", source=run, layers="fc1", regressor="ridge",
                                           **quick)
    table = elemnet_tl.predict(BAND_GAPS, model=features, device="cpu").table
    assert table["prediction"].notna().all()
    from elemnet_tl.errors import InputError

    with pytest.raises(InputError, match=r"^source must be 'auto', 'bundled', 'bundled:NAME' or a run directory, "
                                         r"got an int$"):
        elemnet_tl.finetune(BAND_GAPS, tmp_path / "x", source=3)
