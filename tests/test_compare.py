"""compare-scratch: every method on the same rows, honest baselines, resumable, failures reported not fatal."""

from __future__ import annotations

import importlib
import json
import math
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_ARCH, binary_table
from typer.testing import CliRunner

from elemnet_tl.cli import app
from elemnet_tl.compare import METHODS, compare_scratch
from elemnet_tl.compositions import parse_formulas
from elemnet_tl.errors import InputError
from elemnet_tl.finetune import FINETUNE_DEFAULTS

compare_module = importlib.import_module("elemnet_tl.compare")

ARCH = TINY_ARCH
CONFIG = replace(FINETUNE_DEFAULTS, epochs=3)
SEEDS = 2
runner = CliRunner()


def unique_compositions(table: pd.DataFrame) -> pd.DataFrame:
    """Drop rows whose composition (not just spelling: Li1O2 = Li2O4) was seen before: nothing gets merged."""
    fractions = np.round(parse_formulas(table["formula"]).fractions, 6)
    keys = pd.Series([row.tobytes() for row in fractions], index=table.index)
    return table[~keys.duplicated()].reset_index(drop=True)


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "small.csv"
    table = unique_compositions(binary_table(190, seed=3))
    assert 140 <= len(table) <= 190
    table.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def compared(tmp_path_factory, source_dir, data_csv):
    """Every method, two seeds, two training sizes."""
    out = tmp_path_factory.mktemp("compare") / "out"
    results = compare_scratch(data_csv, out, methods=METHODS, seeds=SEEDS, train_sizes=[0.5, 1.0],
                              source=str(source_dir), config=CONFIG, show_progress=False)
    return out, results


def run_dir(out, method: str, seed: int, size: float = 1.0):
    return out / "runs" / method / ("full" if size == 1.0 else f"size{size:g}") / f"seed{seed}"


def saved(out, method: str, seed: int, size: float = 1.0) -> dict:
    return json.loads((run_dir(out, method, seed, size) / "result.json").read_text())


def split_rows(out, seed: int, size: float = 1.0, method: str = "tl-finetune") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The train and test rows a file-based method was given."""
    data = run_dir(out, method, seed, size) / "data"
    return pd.read_csv(data / "train.csv"), pd.read_csv(data / "test.csv")


# ---------------------------------------------------------------- the experiment's outputs

def test_results_json_every_method(compared):
    out, results = compared
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    errors = {m: e.get("error") for m, e in results["methods"].items() if e["test_mae_mean"] is None}
    assert not errors, f"methods failed: {errors}"
    assert list(results["methods"]) == list(METHODS)
    for method, entry in results["methods"].items():
        for key in ("test_mae_mean", "test_mae_std", "test_rmse_mean", "test_r2_mean", "seconds"):
            assert isinstance(entry[key], float) and math.isfinite(entry[key]), (method, key)
        assert entry["seconds"] >= 0 and entry["test_mae_std"] >= 0
        assert entry["test_rmse_mean"] >= entry["test_mae_mean"] > 0
        per_seed = entry["per_seed"]
        assert [p["seed"] for p in per_seed] == list(range(SEEDS))
        maes = [p["mae"] for p in per_seed]
        assert entry["test_mae_mean"] == pytest.approx(np.mean(maes))
        assert entry["test_mae_std"] == pytest.approx(np.std(maes, ddof=1))
        assert all(p["error"] is None for p in per_seed)
    assert set(results["learning_curve"]) == {"0.5", "1"}
    for size in ("0.5", "1"):
        assert set(results["learning_curve"][size]) == set(METHODS)
    for method, entry in results["methods"].items():
        assert results["learning_curve"]["1"][method]["test_mae_mean"] == entry["test_mae_mean"]
    verdict = results["verdict"]
    assert verdict["best_transfer"] in ("tl-finetune", "tl-features")
    assert verdict["best_scratch"] in ("sc-ef", "sc-pa", "pa-rf")
    assert results["data"]["merged"] == 0


def test_output_files(compared, data_csv):
    out, results = compared
    for name in ("parity.png", "mae_bars.png", "learning_curve.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    table = pd.read_csv(out / "results.csv")
    assert len(table) == len(METHODS) * SEEDS * 2
    assert {"method", "seed", "train_size", "mae", "rmse", "r2", "seconds", "error"} <= set(table.columns)
    full = table[table["train_size"] == 1.0]
    for method, entry in results["methods"].items():
        assert full[full["method"] == method]["mae"].mean() == pytest.approx(entry["test_mae_mean"])
    report = (out / "report.md").read_text()
    for method in METHODS:
        assert f"| {method} |" in report
    assert "## Setup" in report and "## Learning curve" in report
    assert "hold-out per seed" in report and "failed" not in report
    assert f"{results['methods']['mean']['test_mae_mean']:.4g}" in report


def test_every_method_sees_the_same_rows(compared, data_csv):
    out, results = compared
    raw = pd.read_csv(data_csv)
    tests = []
    for seed in range(SEEDS):
        train_full, test = split_rows(out, seed)
        tests.append(set(test["formula"]))
        for size in (0.5, 1.0):
            for method in ("tl-finetune", "tl-features"):
                train, test_here = split_rows(out, seed, size, method)
                pd.testing.assert_frame_equal(test_here, test)  # same test rows at every size, for both
                if size == 1.0:
                    pd.testing.assert_frame_equal(train, train_full)
                else:  # a nested subset of the full training rows
                    assert set(train["formula"]) < set(train_full["formula"])
                    assert len(train) == round(0.5 * len(train_full))
            for method in METHODS:  # every method predicted every test row
                assert len(saved(out, method, seed, size)["predictions"]) == len(test)
        assert not set(train_full["formula"]) & set(test["formula"])  # no leak
        assert set(train_full["formula"]) | set(test["formula"]) == set(raw["formula"])
        assert len(test) == round(0.2 * len(raw))
    assert tests[0] != tests[1]  # a different split per seed


def test_mean_baseline_by_hand(compared, data_csv):
    out, results = compared
    raw = pd.read_csv(data_csv)
    for seed in range(SEEDS):
        _, test = split_rows(out, seed)
        train = raw[~raw["formula"].isin(test["formula"])]
        truth = raw.set_index("formula").loc[test["formula"], "target"].to_numpy()
        expected = np.abs(truth - train["target"].mean()).mean()
        assert results["methods"]["mean"]["per_seed"][seed]["mae"] == pytest.approx(expected, rel=1e-9)
        half_train, _ = split_rows(out, seed, 0.5)
        pred = saved(out, "mean", seed, 0.5)["predictions"]
        assert np.allclose(pred, half_train["target"].mean(), rtol=0, atol=1e-12)


def test_resume_does_not_retrain(compared, monkeypatch, tmp_path, source_dir, data_csv):
    out, results = compared
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    stamps = {p: p.stat().st_mtime_ns for p in (copy / "runs").rglob("*") if p.is_file()}
    calls = []
    monkeypatch.setattr(compare_module, "run_method", lambda method, *a, **k: calls.append(method))
    again = compare_scratch(data_csv, copy, methods=METHODS, seeds=SEEDS, train_sizes=[0.5, 1.0],
                            source=str(source_dir), config=CONFIG, resume=True, show_progress=False)
    assert calls == []
    assert {p: p.stat().st_mtime_ns for p in (copy / "runs").rglob("*") if p.is_file()} == stamps
    for key in ("methods", "verdict", "learning_curve", "split"):
        assert again[key] == results[key], key


def test_second_run_without_resume_reruns_every_method(compared, tmp_path, source_dir, data_csv):
    """Running again into the same folder (no --resume) must redo the runs, not fail on the old run dirs."""
    out, _ = compared
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    again = compare_scratch(data_csv, copy, methods=("tl-features", "tl-finetune"), seeds=1,
                            source=str(source_dir), config=CONFIG, show_progress=False)
    errors = {m: e.get("error") for m, e in again["methods"].items() if e["test_mae_mean"] is None}
    assert not errors


def test_failing_method_is_reported(monkeypatch, tmp_path, source_dir, data_csv):
    real = compare_module.run_method

    def flaky(method, *args, **kwargs):
        if method == "pa-rf":
            raise RuntimeError("boom\nsecond line")
        return real(method, *args, **kwargs)

    monkeypatch.setattr(compare_module, "run_method", flaky)
    out = tmp_path / "out"
    seen = []
    results = compare_scratch(data_csv, out, methods=("sc-ef", "pa-rf", "mean"), seeds=1, source=str(source_dir),
                              config=CONFIG, show_progress=False, on_result=seen.append)
    assert [o.method for o in seen] == ["sc-ef", "pa-rf", "mean"]
    failed = results["methods"]["pa-rf"]
    assert failed["test_mae_mean"] is None and failed["error"] == "RuntimeError: boom"
    assert failed["per_seed"][0]["error"] == "RuntimeError: boom"
    for method in ("sc-ef", "mean"):
        assert math.isfinite(results["methods"][method]["test_mae_mean"])
    assert results["verdict"]["best_scratch"] == "sc-ef"
    assert "RuntimeError: boom" in (run_dir(out, "pa-rf", 0) / "error.txt").read_text()
    assert "| pa-rf |" in (out / "report.md").read_text()
    assert "failed: RuntimeError: boom" in (out / "report.md").read_text()
    table = pd.read_csv(out / "results.csv")
    assert table.loc[table["method"] == "pa-rf", "error"].tolist() == ["RuntimeError: boom"]
    assert table.loc[table["method"] != "pa-rf", "error"].isna().all()
    assert (out / "mae_bars.png").is_file()


@pytest.mark.parametrize("kwargs,message", [
    ({"methods": ("mean", "tl-magic")}, "tl-magic"),
    ({"seeds": 0}, "--seeds"),
    ({"train_sizes": [0.0, 1.0]}, "--train-sizes"),
    ({"train_sizes": [1.5]}, "--train-sizes"),
])
def test_bad_arguments(tmp_path, data_csv, kwargs, message):
    with pytest.raises(InputError, match=message):
        compare_scratch(data_csv, tmp_path / "out", show_progress=False, **kwargs)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the CLI

def test_cli_compare_scratch(tmp_path, source_dir, data_csv):
    out = tmp_path / "out"
    result = runner.invoke(app, ["compare-scratch", str(data_csv), "-o", str(out), "--from", str(source_dir),
                                 "--methods", "sc-ef,mean,pa-rf", "--seeds", "2", "--epochs", "2", "-q"])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert list(results["methods"]) == ["sc-ef", "mean", "pa-rf"]
    assert "test MAE, 2 seed(s)" in result.output
    for method, entry in results["methods"].items():
        assert len(entry["per_seed"]) == 2
        assert method in result.output and f"{entry['test_mae_mean']:.4g}" in result.output
    assert not (out / "runs" / "tl-finetune").exists()
    assert (out / "report.md").is_file()


def test_cli_compare_scratch_test_file(tmp_path, source_dir, data_csv):
    test_path = tmp_path / "held_out.csv"
    test_table = binary_table(40, seed=11)  # duplicates kept: every row is scored
    test_table.to_csv(test_path, index=False)
    out = tmp_path / "out"
    result = runner.invoke(app, ["compare-scratch", str(data_csv), "-o", str(out), "--from", str(source_dir),
                                 "--methods", "sc-ef,mean,pa-rf", "--seeds", "2", "--epochs", "2", "--test",
                                 str(test_path), "-q"])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["split"].startswith(f"test file {test_path} ({len(test_table)} rows")
    assert f"test file {test_path}" in (out / "report.md").read_text()
    raw = pd.read_csv(data_csv)
    expected = np.abs(test_table["target"] - raw["target"].mean()).mean()  # trained on all of the data
    for seed in range(2):
        for method in ("sc-ef", "mean", "pa-rf"):
            assert len(saved(out, method, seed)["predictions"]) == len(test_table)
        assert results["methods"]["mean"]["per_seed"][seed]["mae"] == pytest.approx(expected, rel=1e-9)
    assert results["methods"]["mean"]["test_mae_std"] == 0.0


def test_cli_compare_scratch_unknown_method(tmp_path, data_csv):
    result = runner.invoke(app, ["compare-scratch", str(data_csv), "-o", str(tmp_path / "out"), "--methods",
                                 "mean,nope", "-q"])
    assert result.exit_code == 2, result.output
    output = result.output.strip()
    assert len(output.splitlines()) == 1 and output.startswith("error: ") and "nope" in output


def test_markdown_table_shows_spread_only_with_several_seeds():
    from elemnet_tl.report import markdown_table

    def entry(maes):
        return {"per_seed": [{"mae": m} for m in maes], "description": "d", "seconds": 1.0,
                "test_mae_mean": sum(maes) / len(maes), "test_mae_std": 0.01 if len(maes) > 1 else 0.0,
                "test_rmse_mean": 0.2, "test_r2_mean": 0.9}

    one = markdown_table({"tl-finetune": entry([0.06])})
    assert "±" not in one and "one seed" in one and "0.06" in one
    two = markdown_table({"tl-finetune": entry([0.06, 0.07])})
    assert "0.065 ± 0.01" in two


def test_from_auto_reports_the_chosen_source(monkeypatch, tmp_path, source_dir, data_csv):
    """compare-scratch's default ``--from auto``: tl-finetune picks a source; the report says which."""
    sources_module = importlib.import_module("elemnet_tl.sources")
    monkeypatch.setattr(sources_module, "bundled_sources", lambda: [str(source_dir), str(source_dir)])
    results = compare_scratch(data_csv, tmp_path / "out", methods=("tl-finetune", "mean"), seeds=1,
                              config=CONFIG, members=1, show_progress=False)
    assert results["methods"]["tl-finetune"]["test_mae_mean"] is not None
    report = (tmp_path / "out" / "report.md").read_text()
    assert f"{source_dir} (1 run)" in report


def test_report_names_the_strategies_auto_chose(compared):
    """Each tl-finetune run's card names the strategy auto picked; the report counts them."""
    out, results = compared
    cards = sorted((out / "runs" / "tl-finetune").glob("*/seed*/card.json"))
    picked = [json.loads(c.read_text())["strategy"]["name"] for c in cards]
    assert len(picked) == 2 * SEEDS
    assert results["setup"]["strategies_chosen"] == {name: picked.count(name) for name in picked}
    report = (out / "report.md").read_text()
    for name in set(picked):
        assert f"{name} ({picked.count(name)} run" in report


def test_strategy_words_explain_pa_only_when_chosen():
    from elemnet_tl.report import _strategy_words

    assert _strategy_words({"strategy": "auto", "strategies_chosen": {"full": 2}}) == "auto (chose full (2 runs))"
    words = _strategy_words({"strategy": "auto", "strategies_chosen": {"full+pa": 1}})
    assert words.startswith("auto (chose full+pa (1 run)") and "physical attributes" in words
    assert _strategy_words({"strategy": "full", "strategies_chosen": {"full": 1}}) == "full"
