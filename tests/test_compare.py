"""compare-scratch: every method on the same rows, honest baselines, resumable, failures reported not fatal."""

from __future__ import annotations

import importlib
import json
import math
import re
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_ARCH, binary_table, one_line_error
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
    rows = results["learning_curve_training_rows"]  # what each fraction trained on, said in the table too
    assert rows["1"] == results["setup"]["n_train"] and rows["0.5"] == round(0.5 * rows["1"])
    assert f"| 0.5 | {rows['0.5']} |" in report and f"| 1 | {rows['1']} |" in report
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


def test_second_run_needs_overwrite_then_reruns_every_method(compared, tmp_path, source_dir, data_csv):
    """Running again into the same folder: refused without --overwrite (nothing touched); with it, the
    runs are redone (not failing on the old run dirs) and the other methods' old runs are gone."""
    out, _ = compared
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    with pytest.raises(InputError, match="already holds a comparison.*--overwrite"):
        compare_scratch(data_csv, copy, methods=("mean",), seeds=1, show_progress=False)
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before
    again = compare_scratch(data_csv, copy, methods=("tl-features", "tl-finetune"), seeds=1,
                            source=str(source_dir), config=CONFIG, overwrite=True, show_progress=False)
    errors = {m: e.get("error") for m, e in again["methods"].items() if e["test_mae_mean"] is None}
    assert not errors
    assert sorted(p.name for p in (copy / "runs").iterdir()) == ["tl-features", "tl-finetune"]
    assert sorted(p.name for p in (copy / "runs" / "tl-finetune").iterdir()) == ["full"]
    assert sorted(p.name for p in (copy / "runs" / "tl-finetune" / "full").iterdir()) == ["seed0"]
    assert sum(again["setup"]["strategies_chosen"].values()) == 1  # this run's card only


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
    ({"methods": ()}, "--methods: no method given"),
    ({"methods": ("mean", "mean")}, "--methods: mean given more than once"),
    ({"test_fraction": 1.0}, "--test-fraction"),
    ({"test_fraction": 0.0}, "--test-fraction"),
    ({"members": 0}, "--ensemble"),
    ({"strategy": "bogus"}, "--strategy 'bogus'"),
    ({"strategy": "freeze:99"}, "--strategy freeze:99"),
    ({"source": "bundled:nope"}, "--from bundled:nope"),
    ({"methods": ("mean",), "source": "bundled:nope"}, "--from bundled:nope"),
    ({"device": "bogus"}, "--device 'bogus'"),
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
    assert "test MAE, 2 seeds" in result.output
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


# ---------------------------------------------------------------- bad input, failures, tiny data

MAE_OF = {"tl-finetune": 0.01, "tl-features": 0.02, "sc-ef": 0.03, "sc-pa": 0.04, "pa-rf": 0.05, "mean": 0.5}


def fake_methods(monkeypatch, fail: tuple[str, ...] = ()) -> list[str]:
    """Replace the (slow) methods by predictions off the truth by MAE_OF[method]; ``fail`` ones raise."""
    calls: list[str] = []

    def run(method, split, where, **kwargs):
        calls.append(method)
        if method in fail:
            raise RuntimeError(f"{method} broke")
        return split.test.target + MAE_OF[method]

    monkeypatch.setattr(compare_module, "run_method", run)
    return calls


def bad_test_file(tmp_path, good: int = 5):
    """``good`` scorable rows, then 3 rejectable ones (unknown element, missing and text targets)."""
    rows = binary_table(good, seed=21)
    path = tmp_path / "bad_test.csv"
    extra = pd.DataFrame({"formula": ["Xx2O3", "NaCl", "MgO"], "target": ["1.0", "", "abc"]})
    pd.concat([rows.astype({"target": str}), extra]).to_csv(path, index=False)
    return path


def test_cli_rejected_rows_are_written_and_named(tmp_path):
    """The messy file has 10 rejectable rows: listed in OUT/train.rejected.csv, one console line (even with
    -q), the report names the file."""
    from conftest import MESSY

    out = tmp_path / "out"
    result = runner.invoke(app, ["compare-scratch", str(MESSY), "-o", str(out), "--methods", "mean", "--seeds", "1",
                                 "-q"])
    assert result.exit_code == 0, result.output
    rejected = pd.read_csv(out / "train.rejected.csv")
    assert list(rejected.columns) == ["line", "formula", "reason"] and len(rejected) == 10
    assert rejected["reason"].notna().all() and rejected["line"].is_unique
    assert f"10 rejected rows of {MESSY} listed in {out / 'train.rejected.csv'}" in result.output
    results = json.loads((out / "results.json").read_text())
    assert results["data"]["rejected"] == 10
    assert results["setup"]["rejected_files"] == {"train": {"rows": 10, "file": "train.rejected.csv"}}
    assert "10 rejected" in (out / "report.md").read_text()
    assert "rejected rows listed in train.rejected.csv" in (out / "report.md").read_text()
    assert not (out / "test.rejected.csv").exists()


def test_cli_test_file_rejections(monkeypatch, tmp_path, data_csv):
    """--test with rejectable rows: test.rejected.csv, a console line, and a report that counts them."""
    fake_methods(monkeypatch)
    test_path = bad_test_file(tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(app, ["compare-scratch", str(data_csv), "-o", str(out), "--methods", "mean",
                                 "--seeds", "1", "--test", str(test_path), "-q"])
    assert result.exit_code == 0, result.output
    rejected = pd.read_csv(out / "test.rejected.csv")
    assert rejected["formula"].tolist() == ["Xx2O3", "NaCl", "MgO"]
    assert rejected["line"].tolist() == [7, 8, 9]  # line 1 is the header
    assert f"3 rejected rows of {test_path} listed in {out / 'test.rejected.csv'}" in result.output
    results = json.loads((out / "results.json").read_text())
    assert results["split"].startswith(f"test file {test_path} (8 rows read, 3 rejected, 5 scored")
    report = (out / "report.md").read_text()
    assert "8 rows read, 3 rejected, 5 scored (rejected rows listed in test.rejected.csv)" in report
    assert "every row scored" not in report
    assert len(saved(out, "mean", 0)["predictions"]) == 5
    assert not (out / "train.rejected.csv").exists()


@pytest.mark.parametrize("args,names", [
    (["--strategy", "bogus"], ["--strategy", "bogus"]),
    (["--from", "bundled:nope"], ["--from bundled:nope"]),
    (["--methods", ""], ["--methods"]),
    (["--methods", "mean,nope"], ["--methods", "nope"]),
    (["--test-fraction", "1.0"], ["--test-fraction"]),
    (["--train-sizes", "abc"], ["--train-sizes", "abc"]),
    (["--train-sizes", "0.5,2"], ["--train-sizes"]),
    (["--epochs", "-1"], ["--epochs"]),
    (["--epochs", "0"], ["--epochs"]),
    (["--ensemble", "0"], ["--ensemble"]),
    (["--seeds", "0"], ["--seeds"]),
    (["--device", "bogus"], ["--device 'bogus'"]),
])
def test_cli_bad_options_stop_before_training(monkeypatch, tmp_path, source_dir, data_csv, args, names):
    calls = fake_methods(monkeypatch)
    out = tmp_path / "out"
    base = ["compare-scratch", str(data_csv), "-o", str(out), "--methods", "tl-finetune,sc-ef,mean",
            "--from", str(source_dir), "-q"]
    one_line_error(base + args, *names)
    assert calls == [] and not out.exists()


def test_cli_output_is_a_file(tmp_path, data_csv):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    one_line_error(["compare-scratch", str(data_csv), "-o", str(afile), "--methods", "mean", "--seeds", "1", "-q"],
                   f"{afile}: exists and is not a directory")
    assert afile.read_text() == "mine"


def test_cli_rerun_needs_overwrite(monkeypatch, tmp_path, data_csv):
    fake_methods(monkeypatch)
    out = tmp_path / "out"
    args = ["compare-scratch", str(data_csv), "-o", str(out), "--seeds", "1", "-q"]
    assert runner.invoke(app, args + ["--methods", "mean,pa-rf"]).exit_code == 0
    (out / "notes.txt").write_text("mine")
    report = (out / "report.md").read_text()
    one_line_error(args + ["--methods", "mean"], str(out), "already holds a comparison", "--overwrite", "--resume")
    assert (out / "report.md").read_text() == report
    resumed = runner.invoke(app, args + ["--methods", "mean,pa-rf", "--resume"])
    assert resumed.exit_code == 0, resumed.output
    again = runner.invoke(app, args + ["--methods", "mean", "--overwrite"])
    assert again.exit_code == 0, again.output
    assert list(json.loads((out / "results.json").read_text())["methods"]) == ["mean"]
    assert not (out / "runs" / "pa-rf").exists() and "pa-rf" not in (out / "report.md").read_text()
    assert (out / "notes.txt").read_text() == "mine"  # only the comparison's own files are replaced


def test_cli_failed_method_exits_1_and_says_so(monkeypatch, tmp_path, source_dir, data_csv):
    """A method failing at run time: every result still written, exit 1 naming it, and the headline says the
    transfer side lost tl-finetune instead of silently comparing tl-features."""
    fake_methods(monkeypatch, fail=("tl-finetune",))
    out = tmp_path / "out"
    result = runner.invoke(app, ["compare-scratch", str(data_csv), "-o", str(out), "--from", str(source_dir),
                                 "--methods", "tl-finetune,tl-features,sc-ef,mean", "--seeds", "1", "-q"])
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: 1 method failed: tl-finetune (RuntimeError: tl-finetune broke)")
    results = json.loads((out / "results.json").read_text())
    assert results["failed"] == ["tl-finetune"]
    assert results["methods"]["tl-features"]["test_mae_mean"] == pytest.approx(0.02)
    v = results["verdict"]
    assert v["best_transfer"] == "tl-features" and v["failed"] == ["tl-finetune"]
    assert "tl-finetune failed: the transfer side is tl-features alone" in v["caveats"]
    report = (out / "report.md").read_text()
    assert "tl-finetune failed: the transfer side is tl-features alone" in report
    assert "tl-finetune failed: the transfer side is tl-features alone" in result.output
    assert (out / "mae_bars.png").is_file()


def test_cli_all_methods_fine_exit_0(monkeypatch, tmp_path, source_dir, data_csv):
    fake_methods(monkeypatch)
    out = tmp_path / "out"
    result = runner.invoke(app, ["compare-scratch", str(data_csv), "-o", str(out), "--from", str(source_dir),
                                 "--seeds", "1", "-q"])
    assert result.exit_code == 0, result.output
    assert "Transfer (tl-finetune) beats the best from-scratch method (sc-ef)" in result.output
    assert json.loads((out / "results.json").read_text())["failed"] == []


def test_cli_tiny_data_is_not_conclusive_and_quiet(tmp_path, source_dir):
    """11 rows (1 test row): the networks still run, no warning leaks, the verdict says it is too small."""
    import warnings

    path = tmp_path / "tiny.csv"
    unique_compositions(binary_table(30, seed=5)).head(11).to_csv(path, index=False)
    out = tmp_path / "out"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = runner.invoke(app, ["compare-scratch", str(path), "-o", str(out), "--from", str(source_dir),
                                     "--methods", "mean,sc-ef", "--seeds", "1", "--epochs", "1", "--ensemble",
                                     "1", "--test-fraction", "0.05", "-q"])
    assert result.exit_code == 0, result.output
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []
    assert "Warning" not in result.output
    assert "Caveats: only 1 test row: too small to be conclusive" in result.output
    report = (out / "report.md").read_text()
    assert "too small to be conclusive" in report and "| n/a |" in report
    results = json.loads((out / "results.json").read_text())
    assert results["verdict"]["conclusive"] is False
    assert results["methods"]["sc-ef"]["test_r2_mean"] is None  # R² of one row is undefined, not a warning


def test_too_few_rows_to_split(tmp_path):
    path = tmp_path / "two.csv"
    binary_table(2, seed=5).to_csv(path, index=False)
    one_line_error(["compare-scratch", str(path), "-o", str(tmp_path / "out"), "--methods", "mean", "-q"],
                   path, "needs at least 2 to train on")
    assert not (tmp_path / "out").exists()


def test_verdict_caveats():
    from elemnet_tl.report import headline, verdict

    def entry(maes):
        return {"test_mae_mean": float(np.mean(maes)), "test_mae_std": float(np.std(maes, ddof=1)) if len(maes) > 1
                else 0.0, "per_seed": [{"mae": m} for m in maes]}

    clear = verdict({"tl-finetune": entry([1.0, 1.02]), "sc-ef": entry([2.01, 2.03])}, n_test=100)
    assert clear["conclusive"] and clear["caveats"] == [] and clear["transfer_wins"]
    assert headline(clear) == ("Transfer (tl-finetune) beats the best from-scratch method (sc-ef): 50.0 % lower "
                               "test MAE.")
    small = verdict({"tl-finetune": entry([2.0]), "sc-ef": entry([1.0])}, n_test=1)
    assert not small["conclusive"] and not small["transfer_wins"]
    assert headline(small).startswith("Not conclusive. Transfer (tl-finetune) does NOT beat")
    assert "only 1 test row: too small to be conclusive" in headline(small)
    noisy = verdict({"tl-finetune": entry([1.0, 1.4]), "sc-ef": entry([1.1, 1.5])}, n_test=100)
    assert not noisy["conclusive"] and "within the seed-to-seed spread" in headline(noisy)
    failed = {"tl-finetune": {"test_mae_mean": None, "per_seed": [{}]}, "sc-ef": entry([1.0])}
    lost = verdict(failed, n_test=100)
    assert lost["best_transfer"] is None
    assert headline(lost) == "Caveats: tl-finetune failed: no transfer method to compare."
    constant = verdict({"tl-finetune": entry([2e-4, 2e-4]), "pa-rf": entry([0.0, 0.0])}, n_test=100, constant=True)
    assert not constant["conclusive"] and "the training target has one value" in headline(constant)
    assert headline(constant).startswith("Not conclusive.")
    seen = verdict({"tl-finetune": entry([1.0, 1.02]), "sc-ef": entry([2.01, 2.03])}, n_test=100, in_training=60)
    assert not seen["conclusive"] and "60 of the 100 test rows are compositions of the training data" in headline(seen)
    few = verdict({"tl-finetune": entry([1.0, 1.02]), "sc-ef": entry([2.01, 2.03])}, n_test=100, in_training=5)
    assert few["conclusive"] and "5 of the 100 test rows" in headline(few)


def test_scratch_networks_stop_as_fresh_networks(monkeypatch):
    """sc-ef/sc-pa networks start from fresh weights: stopping as ``reinit`` (at least 60 % of the epochs,
    then 40 % of them as patience), the scratch learning rate, one seeded fit per member."""
    configs = []
    real_fit = compare_module.fit

    def spy(model, *args, **kwargs):
        configs.append(args[4])
        return real_fit(model, *args, **kwargs)

    monkeypatch.setattr(compare_module, "fit", spy)
    rng = np.random.default_rng(0)
    x, y = rng.random((80, 6)).astype(np.float32), rng.random(80)
    pred = compare_module._scratch_net(x, y, x[:5], arch=TINY_ARCH, seed=3, device="cpu",
                                       config=replace(FINETUNE_DEFAULTS, epochs=12, patience=1), members=2)
    assert pred.shape == (5,)
    assert [(c.min_epochs, c.patience, c.lr, c.seed) for c in configs] == [(8, 5, compare_module.SCRATCH_LR, 3),
                                                                            (8, 5, compare_module.SCRATCH_LR, 3 + 7919)]


# ---------------------------------------------------------------- --resume, zero MAE, sources, short failures

def fake_comparison(monkeypatch, tmp_path, data_csv) -> tuple:
    """pa-rf, mean and sc-ef on two seeds (fake methods): the output folder and the recorded calls."""
    calls = fake_methods(monkeypatch)
    out = tmp_path / "out"
    result = runner.invoke(app, ["compare-scratch", str(data_csv), "-o", str(out), "--methods", "pa-rf,mean,sc-ef",
                                 "--seeds", "2", "--epochs", "2", "-q"])
    assert result.exit_code == 0, result.output
    calls.clear()
    return out, calls


def test_cli_resume_refuses_other_data_or_options(monkeypatch, tmp_path, data_csv):
    """--resume on a comparison made with other data, test split or training options: one line naming what
    differs, exit 2, every saved file untouched (no plot crash on old predictions, no results lost)."""
    out, calls = fake_comparison(monkeypatch, tmp_path, data_csv)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    other = tmp_path / "other.csv"
    unique_compositions(binary_table(30, seed=8)).to_csv(other, index=False)
    again = ["compare-scratch", str(data_csv), "-o", str(out), "--methods", "mean", "--seeds", "1", "--epochs", "2",
             "--resume", "-q"]
    for changed, named in [(["compare-scratch", str(other)], "the data"),
                           (["--test-fraction", "0.3"], "--test/--test-fraction"),
                           (["--test", str(other)], "--test/--test-fraction"),
                           (["--epochs", "3"], "--epochs"),  # the saved sc-ef runs depend on it
                           (["--ensemble", "2"], "--ensemble")]:
        args = changed + again[2:] if changed[0] == "compare-scratch" else again + changed
        one_line_error(args, str(out), "--resume with different data or options", f"({named} differs)", "--overwrite")
    assert calls == []
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_cli_resume_keeps_results_not_asked_for_again(monkeypatch, tmp_path, data_csv):
    """--resume with fewer methods and seeds (and a new method): the finished pairs all stay in the outputs,
    only the missing ones run; options no saved result depends on may change."""
    out, calls = fake_comparison(monkeypatch, tmp_path, data_csv)
    old = pd.read_csv(out / "results.csv")
    result = runner.invoke(app, ["compare-scratch", str(data_csv), "-o", str(out), "--methods",
                                 "mean,pa-rf,tl-features", "--seeds", "1", "--epochs", "2", "--resume", "-q"])
    assert result.exit_code == 0, result.output
    assert calls == ["tl-features"]
    table = pd.read_csv(out / "results.csv")
    assert len(table) == len(old) + 1
    pd.testing.assert_frame_equal(table[table["method"] != "tl-features"].reset_index(drop=True), old)
    results = json.loads((out / "results.json").read_text())
    assert list(results["methods"]) == ["pa-rf", "mean", "sc-ef", "tl-features"]
    assert [len(e["per_seed"]) for e in results["methods"].values()] == [2, 2, 2, 1]
    assert results["setup"]["seeds"] == 2
    assert "test MAE, 2 seeds" in result.output  # the console table covers the kept seeds too
    assert "| sc-ef |" in (out / "report.md").read_text()
    record = json.loads((out / "comparison.json").read_text())
    assert record["methods"] == ["pa-rf", "mean", "sc-ef", "tl-features"] and record["seeds"] == 2


def test_resume_checks_a_comparison_saved_before_the_record(monkeypatch, tmp_path, data_csv):
    """A comparison with no comparison.json (an older version's): its results.json's data hash is checked."""
    out, calls = fake_comparison(monkeypatch, tmp_path, data_csv)
    (out / "comparison.json").unlink()
    other = tmp_path / "other.csv"
    unique_compositions(binary_table(30, seed=8)).to_csv(other, index=False)
    with pytest.raises(InputError, match=r"different data or options.*the data differs\)"):
        compare_scratch(other, out, methods=("mean",), seeds=1, resume=True, show_progress=False)
    assert calls == [] and not (out / "comparison.json").exists()


def test_zero_mae_reference_has_no_gain(monkeypatch, tmp_path, data_csv):
    """A best from-scratch test MAE of 0 (e.g. a constant target): the report is written, the relative gain
    is undefined (None), the headline says so."""
    from elemnet_tl.report import headline, verdict

    monkeypatch.setitem(MAE_OF, "pa-rf", 0.0)
    fake_methods(monkeypatch)
    out = tmp_path / "out"
    result = runner.invoke(app, ["compare-scratch", str(data_csv), "-o", str(out), "--methods", "tl-features,pa-rf",
                                 "--seeds", "1", "-q"])
    assert result.exit_code == 0, result.output
    v = json.loads((out / "results.json").read_text())["verdict"]
    assert v["transfer_gain_percent"] is None and v["transfer_wins"] is False
    said = "Transfer (tl-features) does NOT beat the best from-scratch method (pa-rf): test MAE 0.02 vs 0"
    assert said in result.output and said in (out / "report.md").read_text()
    zero = {"test_mae_mean": 0.0, "test_mae_std": 0.0, "per_seed": [{"mae": 0.0}]}
    assert headline(verdict({"tl-features": zero, "pa-rf": zero}, n_test=100)) == (
        "Transfer (tl-features) ties with the best from-scratch method (pa-rf): both predict the test rows "
        "exactly (test MAE 0).")


def test_report_names_the_source_each_transfer_method_used(monkeypatch, tmp_path, source_dir, data_csv):
    """The report's source line says, from the cards, which model tl-finetune and tl-features started from
    (``--from auto``), not a fixed sentence."""
    sources_module = importlib.import_module("elemnet_tl.sources")
    monkeypatch.setattr(sources_module, "bundled_sources", lambda: [str(source_dir), str(source_dir)])
    out = tmp_path / "out"
    results = compare_scratch(data_csv, out, methods=("tl-features", "tl-finetune", "mean"), seeds=1,
                              config=replace(CONFIG, epochs=2), members=1, show_progress=False)
    cards = {m: json.loads((run_dir(out, m, 0) / "card.json").read_text()) for m in ("tl-features", "tl-finetune")}
    assert {c["source_choice"]["name"] for c in cards.values()} == {str(source_dir)}
    assert results["setup"]["sources_used"] == {m: {str(source_dir): 1} for m in ("tl-features", "tl-finetune")}
    report = (out / "report.md").read_text()
    assert (f"- Pretrained source: auto (chosen per run by a ridge probe of each bundled model's activations, "
            f"cross-validated on the training rows) — tl-features started from {source_dir} (1 run); "
            f"tl-finetune started from {source_dir} (1 run).") in report
    assert "formation energy" not in report and "validation split" not in report


def test_cli_too_few_rows_for_transfer_methods(tmp_path, source_dir):
    """8 rows (6 to train on): the networks are refused before anything trains (they could only fail, after the
    others had trained); tl-features fails with a reason that fits compare-scratch (no options it lacks, no
    internal file), short enough for the console table; the others still run."""
    path = tmp_path / "eight.csv"
    unique_compositions(binary_table(12, seed=5)).head(8).to_csv(path, index=False)
    out = tmp_path / "out"
    args = ["compare-scratch", str(path), "-o", str(out), "--from", str(source_dir), "--seeds", "1", "-q"]
    one_line_error(args + ["--methods", "tl-features,tl-finetune,sc-ef,mean"], "6 training rows",
                   "tl-finetune, sc-ef need at least 10", "--methods")
    assert not out.exists()
    result = runner.invoke(app, args + ["--methods", "tl-features,mean"])
    assert result.exit_code == 1, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["methods"]["tl-features"]["error"] == "too few training rows for cross-validation (6; needs 10)"
    assert results["methods"]["mean"]["test_mae_mean"] is not None
    assert "--layers" not in result.output and "train.csv" not in result.output
    assert "failed: too few training rows for cross-validation (6; needs 10)" in (out / "report.md").read_text()


def test_long_failure_is_shortened_for_the_table_and_kept_whole():
    from elemnet_tl.compare import MethodOutcome
    from elemnet_tl.report import markdown_table, summarize

    long = "ValueError: " + "a rather long explanation of what went wrong " * 3
    entry = summarize([MethodOutcome("pa-rf", 0, 1.0, None, 1.0, error=long)])["pa-rf"]
    assert len(entry["error"]) <= 60 and entry["error"].endswith("…")
    assert long.startswith(entry["error"][:-1]) and not entry["error"][-2].isspace()
    assert entry["error_detail"] == long and entry["per_seed"][0]["error"] == long
    assert f"failed: {long}" in markdown_table({"pa-rf": entry})
    short = summarize([MethodOutcome("pa-rf", 0, 1.0, None, 1.0, error="RuntimeError: boom")])["pa-rf"]
    assert short["error"] == "RuntimeError: boom" and "error_detail" not in short


# ---------------------------------------------------------------- partial failures, non-finite predictions, study split

def outcomes_of(maes: dict[str, list[float | None]], size: float = 1.0) -> list:
    """Synthetic per-seed outcomes: ``None`` is a failed seed."""
    from elemnet_tl.compare import MethodOutcome

    return [MethodOutcome(m, seed, size, None if mae is None else {"mae": mae, "rmse": mae * 1.2, "r2": 0.5}, 1.0,
                          error="RuntimeError: broke" if mae is None else None)
            for m, values in maes.items() for seed, mae in enumerate(values)]


def test_partly_failed_method_is_compared_on_the_seeds_both_succeeded_on():
    """tl-finetune works on seed 0 only (0.10); sc-pa 0.099, 0.13, 0.131: on the one shared seed sc-pa wins,
    so transfer does NOT beat it (not "16.7 % lower" from means over different seeds); the table and the
    caveats say tl-finetune failed on 2 of 3 seeds; its std is not a made-up 0."""
    from elemnet_tl.report import headline, markdown_table, summarize, verdict

    summary = summarize(outcomes_of({"tl-finetune": [0.10, None, None], "sc-pa": [0.099, 0.13, 0.131]}))
    tl = summary["tl-finetune"]
    assert tl["test_mae_mean"] == pytest.approx(0.10) and tl["seeds_ok"] == 1 and tl["seeds_failed"] == 2
    assert tl["test_mae_std"] is None  # one good seed of three: no spread
    assert tl["error"] == "failed on 2 of 3 seeds: RuntimeError: broke"
    assert summary["sc-pa"]["seeds_failed"] == 0 and "error" not in summary["sc-pa"]
    v = verdict(summary, n_test=100)
    assert v["best_transfer"] == "tl-finetune" and v["best_scratch"] == "sc-pa"
    assert v["transfer_mae"] == pytest.approx(0.10) and v["scratch_mae"] == pytest.approx(0.099)
    assert v["transfer_wins"] is False and v["paired_seeds"] == 1 and v["seeds"] == 3
    assert "seed_spread" not in v and v["partly_failed"] == ["tl-finetune"] and v["failed"] == []
    said = headline(v)
    assert said.startswith("Not conclusive. Transfer (tl-finetune) does NOT beat the best from-scratch method "
                           "(sc-pa): 1.0 % higher test MAE, on the 1 of 3 seeds both have results for")
    assert "tl-finetune failed on 2 of 3 seeds" in said and "the seed-to-seed spread is unknown" in said
    row = next(line for line in markdown_table(summary).splitlines() if line.startswith("| tl-finetune |"))
    assert "0.1 (1 seed; failed on 2 of 3 seeds: RuntimeError: broke)" in row and "±" not in row
    # ranked on the seeds every method worked on: tl-finetune's one easy seed does not make it the best
    ranked = verdict(summarize(outcomes_of({"tl-finetune": [0.10, None, None], "tl-features": [0.09, 0.14, 0.14],
                                            "sc-pa": [0.099, 0.13, 0.131]})), n_test=100)
    assert ranked["best_transfer"] == "tl-features" and ranked["paired_seeds"] == 3
    assert ranked["transfer_mae"] == pytest.approx(np.mean([0.09, 0.14, 0.14]))


def test_a_failure_outside_a_side_does_not_change_its_ranking():
    """pa-rf failing on seeds 1-2 must not narrow the seeds the transfer methods are ranked on."""
    from elemnet_tl.report import summarize, verdict

    maes = {"tl-finetune": [0.10, 0.20, 0.20], "tl-features": [0.12, 0.12, 0.12], "sc-pa": [0.15, 0.15, 0.15]}
    for pa_rf in ([0.3, 0.3, 0.3], [0.3, None, None]):
        v = verdict(summarize(outcomes_of({**maes, "pa-rf": pa_rf})), n_test=100)
        assert v["best_transfer"] == "tl-features" and v["transfer_wins"] and v["paired_seeds"] == 3


def test_no_common_seed_is_not_compared():
    from elemnet_tl.report import headline, summarize, verdict

    v = verdict(summarize(outcomes_of({"tl-finetune": [0.1, None], "sc-ef": [None, 0.2]})), n_test=100)
    assert "transfer_wins" not in v and not v["conclusive"]
    assert "tl-finetune and sc-ef succeeded on no common seed: not compared" in headline(v)


def partly_failing(monkeypatch, seed: int | None = None, size: float | None = None) -> None:
    """Fake methods (MAE_OF); tl-finetune raises on ``seed`` / at ``size`` (any when None)."""
    def run(method, split, where, **kwargs):
        if method == "tl-finetune" and seed in (None, split.seed) and size in (None, split.size):
            raise RuntimeError("tl-finetune broke")
        return split.test.target + MAE_OF[method]

    monkeypatch.setattr(compare_module, "run_method", run)


@pytest.mark.parametrize("where,extra,said", [
    ({"seed": 1}, [], "tl-finetune (failed on 1 of 2 seeds: RuntimeError: tl-finetune broke)"),
    ({"size": 0.5}, ["--train-sizes", "0.5"], "tl-finetune (failed at training fraction 0.5 on 2 of 2 seeds"),
])
def test_cli_partly_failed_method_exits_1(monkeypatch, tmp_path, source_dir, data_csv, where, extra, said):
    """A method failing on some seeds, or only at a smaller training size, is a failure: exit 1 naming it."""
    partly_failing(monkeypatch, **where)
    out = tmp_path / "out"
    result = runner.invoke(app, ["compare-scratch", str(data_csv), "-o", str(out), "--from", str(source_dir),
                                 "--methods", "tl-finetune,sc-ef,mean", "--seeds", "2", "-q", *extra])
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines()[-1].startswith(f"error: 1 method failed: {said}")
    results = json.loads((out / "results.json").read_text())
    assert results["failed"] == ["tl-finetune"]
    assert results["methods"]["tl-finetune"]["test_mae_mean"] == pytest.approx(0.01)
    if extra:
        assert results["methods"]["tl-finetune"]["error_detail"] == (
            "failed at training fraction 0.5 on 2 of 2 seeds: RuntimeError: tl-finetune broke")
        assert results["learning_curve"]["0.5"]["tl-finetune"]["seeds_failed"] == 2
        assert re.search(r"\| 0\.5 \| \d+ \| failed \|", (out / "report.md").read_text())
    else:
        assert results["methods"]["tl-finetune"]["test_mae_std"] is None
        assert "failed on 1 of 2 seeds" in (out / "report.md").read_text()


def test_learning_curve_says_not_run_not_failed(monkeypatch, tmp_path, data_csv):
    """--methods mean --train-sizes 0.5, then --resume --methods pa-rf: pa-rf never ran at 0.5 ("—"), nothing
    failed (exit 0); a real failure at 0.5 still reads "failed"."""
    fake_methods(monkeypatch)
    out = tmp_path / "out"
    args = ["compare-scratch", str(data_csv), "-o", str(out), "--seeds", "1", "-q"]
    assert runner.invoke(app, args + ["--methods", "mean", "--train-sizes", "0.5"]).exit_code == 0
    result = runner.invoke(app, args + ["--methods", "pa-rf", "--resume"])
    assert result.exit_code == 0, result.output
    report = (out / "report.md").read_text()
    assert re.search(r"\| 0\.5 \| \d+ \| 0\.5 \| — \|", report)  # fraction, training rows, mean, pa-rf
    assert re.search(r"\| 1 \| \d+ \| 0\.5 \| 0\.05 \|", report)
    assert "failed" not in report and "—: not run at that fraction." in report
    assert json.loads((out / "results.json").read_text())["failed"] == []


def test_learning_curve_error_bars_are_the_sample_std(monkeypatch, tmp_path):
    """The learning-curve plot's error bars: the sample std (ddof=1) as in the tables, 0 for one seed."""
    from types import SimpleNamespace

    import matplotlib.axes

    from elemnet_tl import report

    bars = []
    real = matplotlib.axes.Axes.errorbar

    def spy(self, x, y, yerr=None, **kwargs):
        bars.append(list(yerr))
        return real(self, x, y, yerr=yerr, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", spy)
    outcomes = outcomes_of({"mean": [0.5, 0.7, 0.9]}, 0.5) + outcomes_of({"mean": [0.4, 0.6, None]}, 1.0)
    splits = [SimpleNamespace(seed=seed, size=size, train=SimpleNamespace(n_kept=int(100 * size)))
              for seed in range(3) for size in (0.5, 1.0)]
    made = report._plots(tmp_path, outcomes, splits, report.summarize(outcomes), [0.5, 1.0], "")
    assert "learning_curve.png" in made
    # bars[0]: the bar plot's (full size); bars[-1]: the learning curve's
    assert bars[-1] == pytest.approx([np.std([0.5, 0.7, 0.9], ddof=1), np.std([0.4, 0.6], ddof=1)])
    one = outcomes_of({"mean": [0.5]}, 0.5) + outcomes_of({"mean": [0.4]}, 1.0)
    bars.clear()
    report._plots(tmp_path, one, splits[:2], report.summarize(one), [0.5, 1.0], "")
    assert bars[-1] == [0.0, 0.0]


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_predictions_fail_that_seed(monkeypatch, tmp_path, data_csv, bad):
    """A method predicting NaN/inf fails on that seed ("non-finite predictions"), whatever the method order:
    the verdict ranks the others, not a NaN MAE; a resumed result saved with a NaN MAE is a failure too."""
    def run(method, split, where, **kwargs):
        pred = split.test.target + MAE_OF[method]
        if method == "sc-ef" and split.seed == 0:
            pred = pred.copy()
            pred[1] = bad
        return pred

    monkeypatch.setattr(compare_module, "run_method", run)
    out = tmp_path / "out"
    results = compare_scratch(data_csv, out, methods=("sc-ef", "pa-rf", "tl-features", "mean"), seeds=2,
                              show_progress=False)
    entry = results["methods"]["sc-ef"]
    assert entry["per_seed"][0]["error"].startswith("non-finite predictions (1 of ")
    assert "mae" not in entry["per_seed"][0] and entry["seeds_ok"] == 1
    assert entry["test_mae_mean"] == pytest.approx(0.03)
    assert results["failed"] == ["sc-ef"]
    assert saved(out, "sc-ef", 0)["metrics"] is None and saved(out, "sc-ef", 0)["predictions"] is None
    v = results["verdict"]
    assert v["best_scratch"] == "sc-ef" and v["paired_seeds"] == 1  # compared on seed 1, where it worked
    assert math.isfinite(v["transfer_mae"]) and math.isfinite(v["scratch_mae"])
    # an older version saved pa-rf's NaN MAE as a result: on --resume it counts as failed
    path = run_dir(out, "pa-rf", 1) / "result.json"
    old = json.loads(path.read_text())
    old["metrics"]["mae"] = float("nan")
    path.write_text(json.dumps(old))
    again = compare_scratch(data_csv, out, methods=("mean",), seeds=2, resume=True, show_progress=False)
    assert again["methods"]["pa-rf"]["per_seed"][1]["error"] == "non-finite predictions"
    assert again["failed"] == ["sc-ef", "pa-rf"]


def test_study_split_only_with_a_test_file(monkeypatch, tmp_path, data_csv):
    """A JARVIS study set without --test is scored on a seeded hold-out: the report must not claim the
    study's split; with the study's test file it may."""
    fake_methods(monkeypatch)
    folder = tmp_path / "jarvis_tl" / "slme"
    folder.mkdir(parents=True)
    shutil.copy(data_csv, folder / "train.csv")
    binary_table(40, seed=11).to_csv(folder / "test.csv", index=False)
    held = compare_scratch(folder / "train.csv", tmp_path / "held", methods=("mean",), seeds=1, show_progress=False)
    assert held["study"]["property"] == "slme" and held["study"]["same_split"] is False
    report = (tmp_path / "held" / "report.md").read_text()
    assert "same JARVIS split" not in report and "Same split as the study" not in report
    assert "The split differs from the study's" in report and "for orientation only" in report
    given = compare_scratch(folder / "train.csv", tmp_path / "given", test=folder / "test.csv", methods=("mean",),
                            seeds=1, show_progress=False)
    assert given["study"]["same_split"] is True
    assert "Same split as the study" in (tmp_path / "given" / "report.md").read_text()
    from elemnet_tl.compare import same_study_split

    assert not same_study_split(str(data_csv), folder / "test.csv", "slme")  # other training data


def test_scratch_net_docstring_says_what_it_does():
    doc = " ".join(compare_module._scratch_net.__doc__.split())
    assert "SCRATCH_LR" in doc and "raw element fractions" in doc
    assert "on (standardized) inputs" not in doc and "trained as ``reinit`` is" not in doc


def test_api_methods_as_one_comma_string(tmp_path, data_csv):
    """compare_scratch(methods="mean,pa-rf") as --methods takes it (it was read letter by letter)."""
    results = compare_scratch(data_csv, tmp_path / "out", methods="mean, pa-rf", seeds=1, show_progress=False)
    assert list(results["methods"]) == ["mean", "pa-rf"]


def test_resume_refuses_sc_pa_results_scaled_by_an_earlier_version(tmp_path):
    """Physical attributes are kept near their training range since 2026-12-02: sc-pa results of an earlier
    comparison (a record without the entry) are not mixed with new ones; other methods' are."""
    from elemnet_tl.compare import ATTRIBUTE_SCALING, RECORD_FILE, resumed_record
    from elemnet_tl.errors import InputError

    record = {"data_sha256": "x", "methods": ["sc-pa", "pa-rf"], "seeds": 1, "train_sizes": [1.0],
              "attribute_scaling": ATTRIBUTE_SCALING}
    old = {k: v for k, v in record.items() if k != "attribute_scaling"}
    (tmp_path / RECORD_FILE).write_text(json.dumps(old))
    with pytest.raises(InputError, match="the scaling of physical attributes"):
        resumed_record(tmp_path, record)
    (tmp_path / RECORD_FILE).write_text(json.dumps({**old, "methods": ["pa-rf"]}))
    assert resumed_record(tmp_path, {**record, "methods": ["pa-rf"]})["methods"] == ["pa-rf"]
    (tmp_path / RECORD_FILE).write_text(json.dumps(record))
    assert resumed_record(tmp_path, record)["methods"] == ["sc-pa", "pa-rf"]


def test_cli_duplicates_rule_is_an_option(tmp_path):
    """compare-scratch compares on the rows finetune would train on: --duplicates as there (a formation-energy
    column otherwise keeps the most stable polymorph)."""
    frame = binary_table(40, seed=8).rename(columns={"target": "formation_energy"})
    frame = pd.concat([frame, frame.head(5).assign(formation_energy=frame.head(5)["formation_energy"] + 1.0)])
    path = tmp_path / "dups.csv"
    frame.to_csv(path, index=False)
    for rule in ("mean", "most-stable"):
        out = tmp_path / rule
        result = runner.invoke(app, ["compare-scratch", str(path), "-o", str(out), "--methods", "mean",
                                     "--seeds", "1", "--duplicates", rule, "-q"])
        assert result.exit_code == 0, result.output
        data = json.loads((out / "results.json").read_text())["data"]
        assert data["duplicates"] == rule and data["merged"] >= 5
        assert f"({rule})" in (out / "report.md").read_text()


def test_one_seed_and_uneven_seeds_are_said():
    """One seed and a gap under 10 %: not conclusive (the spread is unknown); 41 % stays conclusive. A --resume
    that added seeds for some methods only says which ran on fewer (nothing failed)."""
    from elemnet_tl.report import headline, summarize, verdict

    edge = verdict(summarize(outcomes_of({"tl-finetune": [0.1105], "sc-pa": [0.100]})), n_test=100)
    assert edge["conclusive"] is True and "10.5 % higher" in headline(edge)  # the headline's base: from scratch
    tie = verdict(summarize(outcomes_of({"tl-finetune": [0.1], "sc-pa": [0.1]})), n_test=100)
    assert "ties with the best from-scratch method (sc-pa): the same test MAE" in headline(tie)
    close = verdict(summarize(outcomes_of({"tl-finetune": [0.101], "sc-pa": [0.100]})), n_test=100)
    assert close["conclusive"] is False and "a gap under 10%" in headline(close)
    far = verdict(summarize(outcomes_of({"tl-finetune": [0.059], "sc-pa": [0.100]})), n_test=100)
    assert far["conclusive"] is True and not far["caveats"]
    uneven = verdict(summarize(outcomes_of({"tl-finetune": [0.05, 0.06], "pa-rf": [0.1, 0.11, 0.12]})), n_test=100)
    said = headline(uneven)
    assert "tl-finetune ran on 2 of 3 seeds" in said and "failed" not in said
    assert "on the 2 of 3 seeds both have results for" in said
    tiny = verdict(summarize(outcomes_of({"tl-finetune": [0.1], "sc-pa": [0.10009]})), n_test=100)
    assert "0.09 % lower" in headline(tiny)  # not "0.0 % lower"


def test_resume_with_another_stability_column_is_refused(tmp_path):
    """The same data kept by another --stability-col are other rows: seeds of both are not mixed."""
    frame = binary_table(40, seed=10)
    frame = pd.concat([frame.assign(e_hull=1.0), frame.assign(target=frame["target"] - 5, e_hull=0.0)])
    path = tmp_path / "two.csv"
    frame.to_csv(path, index=False)
    args = ["compare-scratch", str(path), "-o", str(tmp_path / "out"), "--methods", "mean", "-q",
            "--duplicates", "most-stable"]
    first = runner.invoke(app, args + ["--seeds", "1", "--stability-col", "e_hull", "--train-sizes", "0.5"])
    assert first.exit_code == 0, first.output
    one_line_error(args + ["--seeds", "2", "--stability-col", "target", "--resume"], "--stability-col differs")
    one_line_error(args + ["--seeds", "1", "--stability-col", "e_hull", "--train-sizes", "0.5000001", "--resume"],
                   "name the same fraction")


def test_the_target_name_reaches_the_report_the_results_and_each_run_card(tmp_path, source_dir, data_csv):
    """A user's column 'Eg (eV)' was called 'target' in every run card and nowhere named in the report; the
    transfer runs' cards said test_mae null though compare-scratch had scored them; a one-seed report said
    'each method repeated', and one without sc-ef/sc-pa called them network methods that ran."""
    named = tmp_path / "eg.csv"
    pd.read_csv(data_csv).rename(columns={"target": "Eg (eV)"}).to_csv(named, index=False)
    out = tmp_path / "out"
    results = compare_scratch(named, out, methods=("tl-finetune", "tl-features", "mean"), seeds=1,
                              source=str(source_dir), config=replace(CONFIG, epochs=2), members=1,
                              show_progress=False)
    assert results["target"] == {"name": "Eg (eV)", "unit": ""}
    report = (out / "report.md").read_text()
    assert "Test MAE of Eg (eV) (in its unit)." in report
    assert "Seeds: 1 (each method run once: no spread to judge noise by)." in report
    assert "The network method tl-finetune trains one network" in report and "sc-ef" not in report
    for method in ("tl-finetune", "tl-features"):
        card = json.loads((run_dir(out, method, 0) / "card.json").read_text())
        assert card["target"]["name"] == "Eg (eV)", method
        assert card["metrics"]["test_mae"] == pytest.approx(results["methods"][method]["test_mae_mean"])
        assert card["split"]["n_test"] == results["setup"]["n_test"] > 0
    cli = runner.invoke(app, ["compare-scratch", str(named), "-o", str(tmp_path / "cli"), "--from", str(source_dir),
                              "--seeds", "1", "--methods", "mean,pa-rf"])
    assert cli.exit_code == 0, cli.output
    assert "test MAE of Eg (eV), 1 seed" in cli.output
    assert "Fine-tuning strategy" not in (tmp_path / "cli" / "report.md").read_text()


def test_transfer_cards_say_where_their_test_scores_come_from(compared):
    """compare-scratch scores the transfer runs itself: their cards' notes no longer say 'no test metrics'."""
    out, results = compared
    from elemnet_tl.runs import NO_TEST_METRICS

    for method in ("tl-finetune", "tl-features"):
        card = json.loads((out / "runs" / method / "full" / "seed0" / "card.json").read_text())
        assert card["metrics"]["test_mae"] == pytest.approx(results["methods"][method]["per_seed"][0]["mae"])
        assert NO_TEST_METRICS not in card["metrics_note"] and "compare-scratch" in card["metrics_note"]
        test_csv = out / "runs" / method / "full" / "seed0" / "data" / "test.csv"
        assert card["data"]["test"]["source"] == str(test_csv) and card["data"]["test"]["kept"] == len(
            pd.read_csv(test_csv))
        assert len(card["data"]["test"]["sha256"]) == 64
    assert "sample standard deviation" in results["std"]
    assert "mean ± sample std" in (out / "report.md").read_text()


def test_a_test_file_that_overlaps_the_training_data_is_recorded(tmp_path, source_dir, data_csv):
    """Test rows whose compositions are in the training data: counted in results.json and named as a caveat
    in the report (printing a warning alone left no trace of it)."""
    test_path = tmp_path / "held_out.csv"
    raw = pd.read_csv(data_csv)
    pd.concat([raw.head(7), binary_table(20, seed=11)]).to_csv(test_path, index=False)
    out = tmp_path / "out"
    result = runner.invoke(app, ["compare-scratch", str(data_csv), "-o", str(out), "--from", str(source_dir),
                                 "--methods", "mean,pa-rf", "--seeds", "1", "--test", str(test_path), "-q"])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    seen = results["setup"]["test_data"]["rows_in_training_data"]
    assert seen >= 7
    assert any(c.startswith(f"{seen} of the 27 test rows are compositions of the training data")
               for c in results["verdict"]["caveats"])
    assert "compositions of the training data" in (out / "report.md").read_text()
