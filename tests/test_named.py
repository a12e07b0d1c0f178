"""Named datasets (elemnet_tl.named): offline, no network."""

from __future__ import annotations

import math
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from elemnet_tl import named
from elemnet_tl.errors import InputError

PROVENANCE_KEYS = {"name", "source", "target", "unit", "path", "sha256"}


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    """Every test sees an empty user cache, so nothing depends on what this machine downloaded."""
    monkeypatch.setenv("ELEMTL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- expt-formation-enthalpy

def test_expt_al2o3_in_ev_per_atom():
    frame, info = named.load_named_dataset("expt-formation-enthalpy")
    row = frame[frame["formula"] == "Al2O3"]
    assert len(row) == 1
    # file: -17.289 eV per formula unit Al2O3 (5 atoms)
    assert row["exp_energy_per_fu"].iloc[0] == pytest.approx(-17.289, abs=1e-6)
    assert row["target"].iloc[0] == pytest.approx(-3.458, abs=1e-3)
    assert info["unit"] == "eV/atom"


def test_expt_unit_is_ev_per_formula_unit():
    """NaCl: dHf = -411.2 kJ/mol = -4.262 eV per NaCl -> -2.131 eV/atom (the file is not in kJ/mol)."""
    frame, _ = named.load_named_dataset("expt-formation-enthalpy")
    nacl = frame.loc[frame["formula"] == "NaCl", "target"].iloc[0]
    assert nacl == pytest.approx(-411.2 / 96.485 / 2, abs=0.01)


def test_expt_rows_and_provenance():
    frame, info = named.load_named_dataset("expt-formation-enthalpy")
    assert 2100 <= len(frame) <= 2200  # 2,135 compounds in pymatgen's file
    assert frame["target"].dtype == np.float64
    assert frame["target"].map(math.isfinite).all()
    assert frame["target"].between(-5, 1).all()  # eV/atom, not eV/f.u. (Mo1000O2889 is -7557 eV/f.u.)
    assert frame["formula"].map(lambda f: isinstance(f, str) and f != "").all()
    assert PROVENANCE_KEYS <= set(info)
    assert info["name"] == "expt-formation-enthalpy"
    assert info["target"] == "formation_enthalpy"
    assert Path(info["path"]).name == "exp_compounds.json.gz" and Path(info["path"]).is_file()
    assert len(info["sha256"]) == 64
    assert info["duplicates_dropped"] == 0


def test_expt_returns_a_copy():
    frame, _ = named.load_named_dataset("expt-formation-enthalpy")
    frame.loc[0, "target"] = 99.0
    again, _ = named.load_named_dataset("expt-formation-enthalpy")
    assert again.loc[0, "target"] != 99.0


def test_expt_wrong_target():
    assert named.load_named_dataset("expt-formation-enthalpy", "formation_enthalpy")[0]["target"].notna().all()
    with pytest.raises(InputError) as exc:
        named.load_named_dataset("expt-formation-enthalpy", target_col="band_gap")
    message = _one_line(exc)
    assert "band_gap" in message and "formation_enthalpy" in message


# ---------------------------------------------------------------- mp-transport

def test_transport_needs_a_target():
    with pytest.raises(InputError) as exc:
        named.load_named_dataset("mp-transport")
    message = _one_line(exc)
    for column in ("sigma_p", "S_p", "S_n", "kappa_n", "PF_p", "m_n"):
        assert column in message


def test_transport_wrong_target():
    with pytest.raises(InputError) as exc:
        named.load_named_dataset("mp-transport", target_col="band_gap")
    message = _one_line(exc)
    assert "band_gap" in message and "S_p" in message


def test_transport_target_selection():
    frame, info = named.load_named_dataset("mp-transport", target_col="S_n")
    assert 47000 <= len(frame) <= 48500  # 47,737 compounds
    assert list(frame.columns[:2]) == ["formula", "target"]
    assert "pretty_formula" not in frame.columns  # one formula column only
    assert frame["target"].dtype == np.float64
    np.testing.assert_array_equal(frame["target"].to_numpy(), frame["S_n"].to_numpy())
    assert info["target"] == "S_n" and info["unit"] == "uV/K"
    assert Path(info["path"]).name == "transport_database.tar.xz"
    assert PROVENANCE_KEYS <= set(info)


# ---------------------------------------------------------------- names and listing

def test_is_named_dataset():
    assert named.is_named_dataset("expt-formation-enthalpy")
    assert named.is_named_dataset("mp-transport")
    assert named.is_named_dataset("matbench_expt_gap")
    assert named.is_named_dataset("expt_formation_enthalpy_kingsbury")
    assert not named.is_named_dataset("no-such-dataset")
    assert not named.is_named_dataset("data/train.csv")


def test_unknown_name():
    with pytest.raises(InputError) as exc:
        named.load_named_dataset("no-such-dataset")
    message = _one_line(exc)
    assert "no-such-dataset" in message
    assert "expt-formation-enthalpy" in message and "mp-transport" in message and "matbench_steels" in message


def test_list_datasets(empty_cache):
    rows = {d["name"]: d for d in named.list_datasets()}
    for d in rows.values():
        assert {"name", "description", "rows", "target", "unit", "offline"} <= set(d)
        assert "\n" not in d["description"]
    expt = rows["expt-formation-enthalpy"]
    assert expt["rows"] == len(named.load_named_dataset("expt-formation-enthalpy")[0])
    assert (expt["target"], expt["unit"], expt["offline"]) == ("formation_enthalpy", "eV/atom", True)
    transport = rows["mp-transport"]
    assert transport["offline"] is True and transport["target"] is None and "S_p" in transport["targets"]
    steels = rows["matbench_steels"]
    assert (steels["rows"], steels["target"], steels["unit"]) == (312, "yield strength", "MPa")
    assert steels["offline"] is False  # empty cache
    empty_cache.mkdir(parents=True)
    (empty_cache / "matbench_steels.json.gz").write_bytes(b"")
    assert {d["name"]: d for d in named.list_datasets()}["matbench_steels"]["offline"] is True


def test_cache_dir(monkeypatch):
    monkeypatch.setenv("ELEMTL_CACHE", "/some/where")
    assert named.cache_dir() == Path("/some/where")
    monkeypatch.delenv("ELEMTL_CACHE")
    assert named.cache_dir() == Path.home() / ".cache" / "elemnet_tl" / "matminer"


# ---------------------------------------------------------------- matminer downloads (mocked)

def test_download_offline_connection_error(monkeypatch):
    import matminer.datasets
    import requests

    def offline(*args, **kwargs):
        raise requests.exceptions.ConnectionError(
            "HTTPSConnectionPool(host='ml.materialsproject.org', port=443): Max retries exceeded "
            "(Caused by NameResolutionError(\"Failed to resolve: [Errno -2] Name or service not known\"))"
        )

    monkeypatch.setattr(named, "_check_reachable", lambda *a: None)
    monkeypatch.setattr(matminer.datasets, "load_dataset", offline)
    with pytest.raises(InputError) as exc:
        named.load_named_dataset("matbench_steels")
    message = _one_line(exc)
    assert "matbench_steels" in message and "could not be downloaded" in message
    assert "Name or service not known" in message
    # the offline route: which file, from where, to which path
    assert f"as {named.cache_dir() / 'matbench_steels.json.gz'} (the cache; $ELEMTL_CACHE moves it)" in message
    assert "https://" in message and "did you mean" not in message


def test_download_unreachable_fails_before_matminer(monkeypatch):
    import matminer.datasets

    def refuse(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    def must_not_run(*args, **kwargs):
        raise AssertionError("load_dataset called although the server is unreachable")

    monkeypatch.setattr(named, "_proxied", lambda url: False)
    monkeypatch.setattr(named.socket, "create_connection", refuse)
    monkeypatch.setattr(matminer.datasets, "load_dataset", must_not_run)
    with pytest.raises(InputError) as exc:
        named.load_named_dataset("matbench_expt_gap")
    message = _one_line(exc)
    assert "matbench_expt_gap" in message and "could not be downloaded" in message
    with pytest.raises(InputError, match="did you mean expt-formation-enthalpy \\(ships with the tool\\)"):
        named.load_named_dataset("expt_formation_enthalpy")  # the download-only one of a similar name


def _fake_download(monkeypatch, frame: pd.DataFrame):
    """matminer's load_dataset replaced by one that 'downloads' a file and returns ``frame``."""
    import matminer.datasets

    def fake(name, data_home=None, **kwargs):
        Path(data_home).mkdir(parents=True, exist_ok=True)
        (Path(data_home) / f"{name}.json.gz").write_bytes(b"fake")
        return frame

    real_attr = named._matminer_attr
    monkeypatch.setattr(named, "_matminer_attr", lambda n, k, d=None: None if k == "hash" else real_attr(n, k, d))
    monkeypatch.setattr(named, "_check_reachable", lambda *a: None)
    monkeypatch.setattr(matminer.datasets, "load_dataset", fake)


def test_matminer_composition_and_target(monkeypatch, empty_cache):
    from pymatgen.core import Composition

    frame = pd.DataFrame({
        "composition": [Composition("Fe2O3"), Composition({"Fe": 0.62, "C": 0.00095})],
        "yield strength": [1.5, 2.5],
    })
    _fake_download(monkeypatch, frame)
    out, info = named.load_named_dataset("matbench_steels")
    assert list(out["formula"]) == ["Fe2O3", "Fe0.62C0.00095"]
    assert out["target"].tolist() == [1.5, 2.5]
    assert "composition" not in out.columns
    assert info["target"] == "yield strength" and info["unit"] == "MPa"
    assert info["path"] == str(empty_cache / "matbench_steels.json.gz")
    assert PROVENANCE_KEYS <= set(info) and len(info["sha256"]) == 64


def test_matminer_several_numeric_columns(monkeypatch):
    frame = pd.DataFrame({"formula": ["NaCl", "KCl"], "expt_form_e": [-2.1, -2.2], "uncertainty": [0.1, 0.1]})
    _fake_download(monkeypatch, frame)
    with pytest.raises(InputError) as exc:
        named.load_named_dataset("expt_formation_enthalpy_kingsbury")
    message = _one_line(exc)
    assert "expt_form_e" in message and "uncertainty" in message
    out, info = named.load_named_dataset("expt_formation_enthalpy_kingsbury", target_col="expt_form_e")
    assert out["target"].tolist() == [-2.1, -2.2] and info["target"] == "expt_form_e"
    with pytest.raises(InputError) as exc:
        named.load_named_dataset("expt_formation_enthalpy_kingsbury", target_col="nope")
    assert "expt_form_e" in _one_line(exc)


def test_datasets_command_lists_the_bundled_models():
    import json

    from typer.testing import CliRunner

    from elemnet_tl.checkpoint import BUNDLED_DIR, BUNDLED_MODELS
    from elemnet_tl.cli import app

    result = CliRunner().invoke(app, ["datasets"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name, folder in BUNDLED_MODELS.items():
        card = json.loads((BUNDLED_DIR / folder / "card.json").read_text())
        line = next(x for x in result.output.splitlines() if f" {name} " in x)
        assert f"{card['metrics']['test_mae']:.4g}" in line


# ---------------------------------------------------------------- units from matminer's metadata

MATMINER_UNITS = {
    "%", "1/cm", "1/Ω/m/s", "A", "A^3/atom", "GPa", "K", "MPa", "S/cm", "W/K/m/s", "W/m.K", "W/mK",
    "W/mK^2", "cm⁻³", "degrees", "eV", "eV/atom", "emu/cc", "log10(GPa)", "m_e", "meV/atom", "muV/K",
    "mu_B", "mₑ", "ohm.cm", "uV/K", "uW/cm2.K", "unitless", "µV/K", "µW/cm/K²/s", "Å^3", "Å³",
}
"""Every unit the guesser may take from the installed matminer metadata (checked by eye against the
descriptions); a word such as 'the', 'terms', 'SI', 'x' or '298 K' is not among them."""


def _matminer_columns() -> list[tuple[str, str, str]]:
    utils = pytest.importorskip("matminer.datasets.utils")
    metadata = utils._load_dataset_dict()
    return [(ds, col, str(desc)) for ds, meta in sorted(metadata.items())
            for col, desc in (meta.get("columns") or {}).items()]


def test_unit_guesses_over_all_matminer_metadata():
    columns = _matminer_columns()
    assert len(columns) > 300
    guesses = {(ds, col): named._unit_from(col, desc) for ds, col, desc in columns}
    wrong = {key: unit for key, unit in guesses.items() if unit and unit not in MATMINER_UNITS}
    assert not wrong
    assert sum(bool(u) for u in guesses.values()) > 100  # the guesser still finds units


@pytest.mark.parametrize(("dataset", "column", "unit"), [
    ("expt_formation_enthalpy_kingsbury", "expt_form_e", "eV/atom"),  # "(298 K), in eV/atom"
    ("expt_formation_enthalpy_kingsbury", "uncertainty", "eV/atom"),
    ("mp_all_20181018", "e_hull", "eV/atom"),  # "in eV per atom"
    ("mp_nostruct_20181018", "e_hull", "eV/atom"),
    ("mp_all_20181018", "e_form", "eV/atom"),  # "Formation energy per atom (eV)"
    ("boltztrap_mp", "s_p", "uV/K"),  # "in micro Volts per Kelvin"
    ("boltztrap_mp", "s_n", "uV/K"),
    ("citrine_thermal_conductivity", "k_expt", "W/m.K"),  # "in SI units of W/m.K"
    ("castelli_perovskites", "mu_b", "mu_B"),  # "in terms of Bohr magneton"
    ("jarvis_ml_dft_training", "mu_b", "mu_B"),  # "in Bohr Magneton"
    ("dielectric_constant", "volume", "Å^3"),  # "in cubic angstroms"
    ("dielectric_constant", "nsites", ""),  # "The # of atoms in the unit cell"
    ("flla", "nsites", ""),
    ("jarvis_dft_3d", "epsilon_x opt", ""),  # "in x direction"
    ("jarvis_dft_2d", "epsilon_z tbmbj", ""),
    ("jarvis_ml_dft_training", "hole mass_y", ""),
    ("tholander_nitrides", "ht_id", ""),  # "in httk"
    ("brgoch_superhard_training", "suspect_value", ""),  # "(within 5%/1GPa of MP)"
    ("m2ax", "bulk modulus", "GPa"),  # "In GPa"
    # right before, unchanged
    ("matbench_steels", "yield strength", "MPa"),
    ("matbench_expt_gap", "gap expt", "eV"),
    ("matbench_jdft2d", "exfoliation_en", "meV/atom"),
    ("matbench_log_gvrh", "log10(G_VRH)", "log10(GPa)"),
    ("matbench_phonons", "last phdos peak", "1/cm"),
    ("matbench_dielectric", "n", "unitless"),
    ("expt_formation_enthalpy", "e_form expt", "eV/atom"),
    ("wolverton_oxides", "vpa", "A^3/atom"),
    ("wolverton_oxides", "alpha", "degrees"),
    ("m2ax", "a", "A"),
    ("boltztrap_mp", "pf_n", "uW/cm2.K"),
    ("heusler_magnetic", "pol fermi", "%"),
    ("ricci_boltztrap_mp_tabular", "S.p [µV/K]", "µV/K"),
    ("ricci_boltztrap_mp_tabular", "Sᵉ.p.c [cm⁻³]", "cm⁻³"),
    ("ucsb_thermoelectrics", "rho (ohm.cm)", "ohm.cm"),
    ("ucsb_thermoelectrics", "kappa [W/mK]", "W/mK"),
])
def test_unit_guesses(dataset, column, unit):
    described = {(ds, col): desc for ds, col, desc in _matminer_columns()}
    assert named._unit_from(column, described[dataset, column]) == unit


def test_unit_from_plain_descriptions():
    assert named._unit_from("expt_form_e", "Experimental standard formation enthalpy (298 K), in eV/atom.") == "eV/atom"
    assert named._unit_from("x", "energy above hull (in eV per atom)") == "eV/atom"
    assert named._unit_from("x", "Seebeck coefficient in micro Volts per Kelvin") == "uV/K"
    assert named._unit_from("x", "measured at 298 K (room temperature)") == ""
    assert named._unit_from("x", "conductivity in SI units") == ""
    assert named._unit_from("x [eV]", "in the x direction") == "eV"
    assert named._unit_from("x [a.u.]", "band gap, in eV") == "eV"  # a column bracket that is no unit
    assert named._unit_from("x", "") == ""


def test_a_download_that_goes_silent_gives_up(monkeypatch):
    """matminer's download sets no timeout: a server that accepts and never answers blocked forever. Inside
    download_timeouts every requests call without its own timeout gets one."""
    import socket
    import threading
    import time

    import requests

    from elemnet_tl.named import download_timeouts

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    held = []
    threading.Thread(target=lambda: held.append(server.accept()), daemon=True).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/data.json.gz"
    t0 = time.perf_counter()
    with download_timeouts(connect_s=2, read_s=0.5), pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(url)
    assert time.perf_counter() - t0 < 10
    with download_timeouts(connect_s=2, read_s=0.5), pytest.raises(requests.exceptions.ReadTimeout):
        requests.Session().request("GET", url, None)  # positional arguments pass through
    with pytest.raises(RuntimeError), download_timeouts(connect_s=2, read_s=0.5):
        raise RuntimeError("a failure inside")
    assert named._TIMEOUTS.get() is None  # outside (and after a failure inside): calls pass through unchanged
    server.close()


def test_predict_does_not_score_a_named_dataset_of_another_property(tmp_path):
    """The band-gap model on the experimental formation enthalpies: eV against eV/atom is no score (it printed
    an MAE of 2.0); the dataset's own column name scores it on request."""
    from elemnet_tl.predict import predict

    other = predict("expt-formation-enthalpy", "bundled:band-gap", device="cpu")
    assert "error" not in other.table.columns and "target (input)" in other.table.columns
    assert "eV/atom" in other.featurized.table.provenance["target_not_taken_reason"]
    same = predict("expt-formation-enthalpy", "bundled", device="cpu")
    assert same.table["error"].notna().all()


def test_a_dataset_of_several_properties_predicts_without_choosing_one():
    from elemnet_tl.datasets import load_table

    table = load_table("mp-transport", require_target=False, target_names=("formation energy",))
    assert not table.has_target and {"S_p", "kappa_n"} <= set(table.frame.columns)
    with pytest.raises(InputError, match="--target-col"):
        load_table("mp-transport")  # training needs one


def test_units_compare_however_they_are_spelled():
    from elemnet_tl.datasets import _unit_key

    assert _unit_key("eV per atom") == _unit_key("eV/atom") == _unit_key(" ev / Atom")
    assert _unit_key("eV") != _unit_key("eV/atom")
