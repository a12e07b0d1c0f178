"""Named datasets: tables of formulas and targets that need no file from the user.

Two ship with installed packages and work offline:

``expt-formation-enthalpy``
    pymatgen's ``analysis/compatibility/exp_compounds.json.gz``: the experimental standard formation
    enthalpies of 2,135 solids used to fit the Materials Project 2020 energy corrections (Wang,
    Kingsbury et al., Sci. Rep. 11, 15496 (2021); compiled from Kim et al. 2017, Kubaschewski 1993
    and NIST-JANAF). Each record holds ``formula``, ``exp energy`` (eV per formula unit *as written*),
    ``uncertainty`` (same unit) and ``mpid``. The target is eV/atom = eV per formula unit / number of
    atoms in that formula (Al2O3: -17.289 eV/f.u. / 5 = -3.458 eV/atom).
``mp-transport``
    matminer's bundled ``utils/data_files/mp_transport/transport_database.tar.xz``: BoltzTraP
    transport properties of 47,737 Materials Project compounds (Ricci et al., Sci. Data 4, 170085
    (2017)). Ten numeric properties; the target must be chosen with ``target_col``.

Every matminer dataset name (``matbench_expt_gap``, ``matbench_steels``,
``expt_formation_enthalpy_kingsbury``, ...) is also a named dataset: it is read with
:func:`matminer.datasets.load_dataset` from the user cache (:func:`cache_dir`) and downloaded there
on first use.
"""

from __future__ import annotations

import contextlib
import contextvars
import gzip
import importlib
import importlib.resources
import json
import math
import os
import re
import socket
import sys
import tarfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from .datasets import sha256_of
from .errors import InputError

FORMULA_COLUMNS = ("formula", "composition", "formula_pretty", "pretty_formula", "compound")
"""Formula column names looked for in matminer datasets (case-insensitive), in order of preference."""

CONNECT_TIMEOUT_S = 5.0
"""Seconds to wait for the dataset's server before declaring a download impossible."""
READ_TIMEOUT_S = 60.0
"""Seconds of silence in the middle of a download before it is abandoned (one line, exit 2)."""


@dataclass(frozen=True)
class NamedDataset:
    """A dataset known by name."""

    name: str
    """E.g. ``"expt-formation-enthalpy"``."""
    description: str
    target: str
    """Default target column of the source (``""`` when ``target_col`` must choose one)."""
    unit: str
    """Unit of the default target (or, for several targets, where the units are described)."""
    source: str
    """Where the data comes from, in words, with a citation."""
    offline: bool
    """True: ships with an installed package; False: downloaded into the user cache on first use."""
    targets: tuple[str, ...] = ()
    """Columns ``target_col`` may name (empty when not known without loading the data)."""


# --------------------------------------------------------------------------------------------------
# Built-in datasets

EXPT_TARGET = "formation_enthalpy"

EXPT = NamedDataset(
    name="expt-formation-enthalpy",
    description=(
        "Experimental standard formation enthalpies of 2,135 inorganic solids (pymatgen's MP2020 "
        "fitting set), eV/atom = eV per formula unit as written / atoms in that formula; one row per "
        "composition (the file has no repeats; a repeat would keep the lowest eV/atom)"
    ),
    target=EXPT_TARGET,
    unit="eV/atom",
    source=(
        "pymatgen analysis/compatibility/exp_compounds.json.gz; Wang, Kingsbury et al., "
        "Sci. Rep. 11, 15496 (2021), compiled from Kim et al. Sci. Data 4, 170162 (2017), "
        "Kubaschewski et al. (1993) and NIST-JANAF"
    ),
    offline=True,
    targets=(EXPT_TARGET,),
)

TRANSPORT_UNITS = {
    "S_p": "uV/K",
    "S_n": "uV/K",
    "sigma_p": "BoltzTraP conductivity at tau = 1e-14 s (unit not stated in the file)",
    "sigma_n": "BoltzTraP conductivity at tau = 1e-14 s (unit not stated in the file)",
    "kappa_p": "BoltzTraP electronic thermal conductivity at tau = 1e-14 s (unit not stated in the file)",
    "kappa_n": "BoltzTraP electronic thermal conductivity at tau = 1e-14 s (unit not stated in the file)",
    "PF_p": "power factor S^2*sigma at tau = 1e-14 s (unit not stated in the file)",
    "PF_n": "power factor S^2*sigma at tau = 1e-14 s (unit not stated in the file)",
    "m_p": "conductivity effective mass (unit not stated in the file; nominally m_e)",
    "m_n": "conductivity effective mass (unit not stated in the file; nominally m_e)",
}
"""Units of the mp-transport properties. Only the Seebeck unit is certain from the values (metals
have |S| of a few uV/K); in the file PF = S^2*sigma*1e-6 (S in uV/K) and kappa/(sigma*T) is of the
order of 1e6 times the Lorenz number, so sigma, kappa and PF share one length unit."""

TRANSPORT = NamedDataset(
    name="mp-transport",
    description=(
        "DFT (BoltzTraP, constant relaxation time) transport properties of 47,737 Materials Project "
        "compounds, p-type (_p) and n-type (_n): sigma, S, kappa, PF, m; choose one with target_col; "
        "polymorphs share a formula (one row per mp_id)"
    ),
    target="",
    unit="depends on target_col (S_p/S_n in uV/K)",
    source=(
        "matminer utils/data_files/mp_transport/transport_database.tar.xz; Ricci et al., "
        "Sci. Data 4, 170085 (2017), doi:10.1038/sdata.2017.85"
    ),
    offline=True,
    targets=tuple(TRANSPORT_UNITS),
)

BUILTIN: dict[str, NamedDataset] = {d.name: d for d in (EXPT, TRANSPORT)}


def cache_dir() -> Path:
    """Where matminer datasets are downloaded: ``$ELEMTL_CACHE``, else ``~/.cache/elemnet_tl/matminer``."""
    configured = os.environ.get("ELEMTL_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path("~/.cache/elemnet_tl/matminer").expanduser()


def _package_file(package: str, relative: str) -> Path | None:
    """A data file inside an installed package (no hard-coded site-packages), or None."""
    try:
        root = importlib.resources.files(package)
    except (ModuleNotFoundError, TypeError):
        return None
    candidate = root.joinpath(relative)
    if candidate.is_file():
        return Path(str(candidate))
    # layout changed: search the package folders for the file name
    try:
        roots = [Path(p) for p in getattr(importlib.import_module(package), "__path__", [])]
    except ImportError:
        return None
    for folder in roots:
        for found in sorted(folder.rglob(Path(relative).name)):
            return found
    return None


def _package_version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def _one_line(text: str, limit: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------------
# expt-formation-enthalpy

def _expt_path() -> Path | None:
    return _package_file("pymatgen", "analysis/compatibility/exp_compounds.json.gz")


@lru_cache(maxsize=1)
def _expt_table() -> tuple[pd.DataFrame, dict]:
    """The expt-formation-enthalpy frame (formula, target, ...) and its counts; read once."""
    from pymatgen.core import Composition

    path = _expt_path()
    if path is None:
        raise InputError(
            f"{EXPT.name}: exp_compounds.json.gz not found in the installed pymatgen "
            f"{_package_version('pymatgen')} (reinstall pymatgen)"
        )
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            records = json.load(fh)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read {EXPT.name}: {_one_line(exc)}") from None
    if not isinstance(records, list):
        raise InputError(f"{path}: expected a list of compounds, got {type(records).__name__}")

    rows = []
    skipped = 0
    for rec in records:
        formula = rec.get("formula") if isinstance(rec, dict) else None
        energy = rec.get("exp energy") if isinstance(rec, dict) else None
        try:
            energy = float(energy)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                comp = Composition(str(formula))
            n_atoms = float(comp.num_atoms)
        except (TypeError, ValueError, KeyError):
            skipped += 1
            continue
        if not (formula and math.isfinite(energy) and n_atoms > 0):
            skipped += 1
            continue
        unc = rec.get("uncertainty")
        try:
            unc = float(unc) / n_atoms
        except (TypeError, ValueError):
            unc = float("nan")
        rows.append({
            "formula": str(formula),
            "target": energy / n_atoms,
            "exp_energy_per_fu": energy,
            "uncertainty_per_atom": unc,
            "n_atoms_fu": n_atoms,
            "mpid": rec.get("mpid"),
            "_key": comp.reduced_formula,
        })
    frame = pd.DataFrame(rows)
    # one row per composition: keep the most negative eV/atom (the ground state); the file has none
    before = len(frame)
    frame = frame.sort_values("target", kind="stable").drop_duplicates("_key", keep="first")
    frame = frame.sort_index().drop(columns="_key").reset_index(drop=True)
    frame["target"] = frame["target"].astype(np.float64)
    counts = {"records": len(records), "skipped": skipped, "duplicates_dropped": before - len(frame),
              "path": str(path), "sha256": sha256_of(path)}
    return frame, counts


def _load_expt(target_col: str | None) -> tuple[pd.DataFrame, dict]:
    if target_col is not None and target_col not in (EXPT_TARGET, "target"):
        raise InputError(f"{EXPT.name}: no target column {target_col!r}; valid: {EXPT_TARGET} (eV/atom)")
    frame, counts = _expt_table()
    info = {
        "name": EXPT.name, "source": EXPT.source, "target": EXPT_TARGET, "unit": EXPT.unit,
        "path": counts["path"], "sha256": counts["sha256"],
        "skipped": counts["skipped"], "duplicates_dropped": counts["duplicates_dropped"],
    }
    return frame.copy(), info


# --------------------------------------------------------------------------------------------------
# mp-transport

def _transport_path() -> Path | None:
    return _package_file("matminer.utils", "data_files/mp_transport/transport_database.tar.xz")


@lru_cache(maxsize=1)
def _transport_table() -> tuple[pd.DataFrame, str, str]:
    """The raw transport database (read from the .tar.xz, never extracted), its path and sha256."""
    path = _transport_path()
    if path is None:
        raise InputError(
            f"{TRANSPORT.name}: transport_database.tar.xz not found in the installed matminer "
            f"{_package_version('matminer')}; try the download dataset ricci_boltztrap_mp_tabular"
        )
    try:
        with tarfile.open(path, mode="r:xz") as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".csv")]
            if len(members) != 1:
                raise ValueError(f"expected one .csv inside, found {len(members)}")
            frame = pd.read_csv(tar.extractfile(members[0]))
    except (OSError, ValueError, tarfile.TarError) as exc:
        raise InputError(f"{path}: cannot read {TRANSPORT.name}: {_one_line(exc)}") from None
    if "pretty_formula" not in frame.columns:
        raise InputError(f"{path}: no pretty_formula column; columns are {', '.join(map(str, frame.columns))}")
    return frame, str(path), sha256_of(path)


def _numeric_columns(frame: pd.DataFrame, exclude: tuple[str, ...] = ()) -> list[str]:
    return [str(c) for c in frame.columns
            if str(c) not in exclude and pd.api.types.is_numeric_dtype(frame[c])]


def _match_column(wanted: str, columns: list[str]) -> str | None:
    if wanted in columns:
        return wanted
    lower = [c for c in columns if c.lower() == wanted.lower()]
    return lower[0] if len(lower) == 1 else None


def _load_transport(target_col: str | None, require_target: bool = True) -> tuple[pd.DataFrame, dict]:
    raw, path, sha = _transport_table()
    numeric = _numeric_columns(raw)
    frame = raw.rename(columns={"pretty_formula": "formula"}).drop(columns=["target", "line"], errors="ignore")
    info = {"name": TRANSPORT.name, "source": TRANSPORT.source, "target": None, "unit": "", "path": path,
            "sha256": sha}
    if target_col is None and not require_target and len(numeric) != 1:  # predict: the properties ride along
        return frame.reset_index(drop=True), info
    if target_col is None:
        if len(numeric) != 1:
            raise InputError(
                f"{TRANSPORT.name}: several properties, choose the target with --target-col: "
                f"{', '.join(numeric)}"
            )
        column = numeric[0]
    else:
        column = _match_column(target_col, numeric)
        if column is None:
            raise InputError(
                f"{TRANSPORT.name}: no target column {target_col!r}; valid: {', '.join(numeric)}"
            )
    frame.insert(1, "target", frame[column].astype(np.float64))
    frame = frame[["formula", "target"] + [c for c in frame.columns if c not in ("formula", "target")]]
    info.update(target=column, unit=TRANSPORT_UNITS.get(column, "not stated in the file"))
    return frame.reset_index(drop=True), info


# --------------------------------------------------------------------------------------------------
# matminer datasets (downloaded into the user cache)

@lru_cache(maxsize=1)
def _matminer_names() -> frozenset[str]:
    """Dataset names in matminer's bundled metadata (read from disk, no network)."""
    try:
        from matminer.datasets import get_available_datasets
    except ImportError:
        return frozenset()
    with contextlib.redirect_stdout(sys.stderr):
        return frozenset(get_available_datasets(print_format=None))


def _matminer_attr(name: str, key: str, default=None):
    from matminer.datasets import get_dataset_attribute

    try:
        return get_dataset_attribute(name, key)
    except KeyError:
        return default


def _matminer_cache_path(name: str) -> Path:
    return cache_dir() / f"{name}.{_matminer_attr(name, 'file_type', 'json.gz')}"


_UNIT_TOKENS = frozenset({
    "eV", "meV", "K", "GPa", "MPa", "%", "degrees", "A", "Å", "Å^3", "Å³", "cm⁻³", "cm^-3", "cm^-1",
    "m_e", "mₑ", "mu_B", "ohm.cm", "unitless",
})
"""Units without a '/' that a matminer column description or name (``x [K]``) may state; anything
else without a '/' (``the``, ``x``, ``terms``, ``298 K``) is not taken for a unit."""

_UNIT_PHRASES = (
    (re.compile(r"micro\s*volts?\s*(?:per\s+|/\s*)kelvin\b", re.IGNORECASE), "uV/K"),
    (re.compile(r"bohr\s+magnetons?\b", re.IGNORECASE), "mu_B"),
    (re.compile(r"cubic\s+angstroms?\b", re.IGNORECASE), "Å^3"),
    (re.compile(r"angstroms?\b", re.IGNORECASE), "Å"),
    (re.compile(r"kelvin\b", re.IGNORECASE), "K"),
    (re.compile(r"watts?\s*/\s*meters?\s*\*\s*kelvin\b", re.IGNORECASE), "W/mK"),
)
"""Units written out in words, matched at the start of an ``in ...`` clause."""

_UNIT_IN = re.compile(r"\bin\s+(?:SI\s+)?(?:units\s+of\s+|terms\s+of\s+)?", re.IGNORECASE)
_UNIT_WORD = re.compile(r"\[?([^\s,;()\[\]]+)\]?(\s+per\s+atom\b)?")
_UNIT_PAREN = re.compile(r"\(([^()]*(?:/|eV|GPa|MPa|K\b|unitless)[^()]*)\)")
_UNIT_LABEL = re.compile(r"\bunits?:\s*([^\s,;()]+)", re.IGNORECASE)
_UNIT_BRACKET = re.compile(r"\[([^\]]+)\]")


def _as_unit(text: str) -> str:
    """``text`` when it looks like a unit (no blank, and a '/' or a known unit token), else ''."""
    text = text.strip().rstrip(".")
    if not text or re.search(r"\s", text) or "://" in text or re.fullmatch(r"[A-Z]{2,}(/[A-Z]{2,})+", text):
        return ""  # a link, or acronyms (MP/OQMD), are not units
    return text if "/" in text or text in _UNIT_TOKENS else ""


def _unit_after_in(rest: str) -> str:
    """The unit at the start of the text after an ``in`` (``eV/atom.``, ``eV per atom``, ``Kelvin``)."""
    for pattern, unit in _UNIT_PHRASES:
        if pattern.match(rest):
            return unit
    word = _UNIT_WORD.match(rest)
    if not word:
        return ""
    unit = _as_unit(word.group(1))
    if unit and word.group(2) and "/" not in unit:
        unit += "/atom"
    return unit


def _unit_from(column: str, description: str) -> str:
    """Best-effort unit of a matminer column from its name (``x [eV]``) or metadata description.

    In the description an ``in X`` clause wins over a parenthesis (``Experimental standard
    formation enthalpy (298 K), in eV/atom.`` -> ``eV/atom``); ``in eV per atom`` gives ``eV/atom``.
    A guess is kept only when it looks like a unit (:func:`_as_unit`): no unit rather than a wrong one.
    """
    found = _UNIT_BRACKET.search(column)
    unit = _as_unit(found.group(1)) if found else ""
    desc = " ".join((description or "").split())
    if not unit:
        label = _UNIT_LABEL.search(desc)
        unit = _as_unit(label.group(1)) if label else ""
    if not unit:
        unit = next((u for m in _UNIT_IN.finditer(desc) if (u := _unit_after_in(desc[m.end():]))), "")
    if not unit:
        unit = next((u for m in _UNIT_PAREN.finditer(desc) if (u := _as_unit(m.group(1)))), "")
    if not unit and re.search(r"\bunitless\b", desc, re.IGNORECASE):
        unit = "unitless"
    if unit in ("eV", "meV") and re.search(r"\bper atom\b", desc, re.IGNORECASE):
        unit += "/atom"  # "Formation energy per atom (eV)"
    if unit and re.search(r"logarithm|log10", desc + column, re.IGNORECASE):
        unit = f"log10({unit})"
    return unit


def _matminer_target_column(name: str) -> str | None:
    """The column matminer's metadata calls the target variable, when there is exactly one."""
    columns = _matminer_attr(name, "columns", {}) or {}
    marked = [c for c, d in columns.items() if str(d).lower().startswith(("target variable", "a target variable"))]
    return marked[0] if len(marked) == 1 else None


def _matminer_dataset(name: str) -> NamedDataset:
    target = _matminer_target_column(name) or ""
    desc = _one_line(_matminer_attr(name, "description", "") or "", 200)
    columns = _matminer_attr(name, "columns", {}) or {}
    reference = _one_line(_matminer_attr(name, "reference", "") or "", 200)
    return NamedDataset(
        name=name,
        description=desc,
        target=target,
        unit=_unit_from(target, str(columns.get(target, ""))) if target else "",
        source=f"matminer dataset {name}: {reference} ({_matminer_attr(name, 'url', '')})",
        offline=False,
    )


def _short_reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    errno = re.search(r"\[Errno -?\d+\] ([^'\"()\]]+)", text)
    if errno:
        return f"{type(exc).__name__}: {errno.group(1).strip()}"
    return f"{type(exc).__name__}: {_one_line(text, 120)}" if text else type(exc).__name__


def _proxied(url: str) -> bool:
    try:
        from requests.utils import get_environ_proxies
    except ImportError:
        return False
    try:
        return bool(get_environ_proxies(url))
    except Exception:  # noqa: BLE001 - a broken proxy setting: let requests report it
        return True


_TIMEOUTS: contextvars.ContextVar[tuple[float, float] | None] = contextvars.ContextVar("elemtl_download_timeouts",
                                                                                       default=None)
_TIMEOUT_ARG = 8
"""Position of ``timeout`` among ``requests.Session.request``'s positional arguments after ``self``."""


@lru_cache(maxsize=1)
def _install_timeouts() -> None:
    """Wrap ``requests.Session.request`` once: inside :func:`download_timeouts` (this thread or task only), a
    call without its own timeout gets one; elsewhere the wrapper passes every call through unchanged."""
    import requests

    original = requests.Session.request

    def request(self, *args, **kwargs):
        timeouts = _TIMEOUTS.get()
        if timeouts is not None and len(args) <= _TIMEOUT_ARG and kwargs.get("timeout") is None:
            kwargs["timeout"] = timeouts
        return original(self, *args, **kwargs)

    requests.Session.request = request


@contextlib.contextmanager
def download_timeouts(connect_s: float | None = None, read_s: float | None = None) -> Iterator[None]:
    """Every ``requests`` call made inside gets a timeout unless it sets its own: matminer's download sets
    none, so a server that accepts the connection and then stays silent would block forever (a captive
    portal, a stalled proxy). ``read_s``: the longest silence between two received bytes."""
    _install_timeouts()
    token = _TIMEOUTS.set((CONNECT_TIMEOUT_S if connect_s is None else connect_s,
                           READ_TIMEOUT_S if read_s is None else read_s))
    try:
        yield
    finally:
        _TIMEOUTS.reset(token)


def _offline_route(name: str, url: str) -> str:
    """How to use dataset ``name`` without a network, and a dataset that ships with the tool of a similar name."""
    import difflib

    route = (f"; offline: put {url or 'its file'} as {_matminer_cache_path(name)} (the cache; $ELEMTL_CACHE moves it), "
             "or give a CSV of it (formula and target columns)")
    near = difflib.get_close_matches(name, list(BUILTIN), n=1, cutoff=0.8)
    return route + (f"; did you mean {near[0]} (ships with the tool)?" if near else "")


def _check_reachable(name: str, url: str) -> None:
    """Fail within CONNECT_TIMEOUT_S when the download server cannot be reached (requests has no
    timeout in matminer). Skipped when a proxy is configured: requests will go through it."""
    parsed = urlparse(url)
    if not parsed.hostname or _proxied(url):
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise InputError(f"dataset {name} could not be downloaded (no network?): cannot reach {parsed.hostname}: "
                         f"{_short_reason(exc)}{_offline_route(name, url)}") from None


def _formula_string(value: object) -> str | None:
    """A formula string from a str, a pymatgen Composition, or an object with ``.composition``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        return value
    comp = getattr(value, "composition", None) if not hasattr(value, "get_el_amt_dict") else value
    if comp is None or not hasattr(comp, "get_el_amt_dict"):
        return str(value)
    parts = []
    for el, amt in comp.get_el_amt_dict().items():
        amount = float(amt)
        if amount == 1:
            parts.append(el)
        elif amount.is_integer():
            parts.append(f"{el}{int(amount)}")
        else:
            parts.append(f"{el}{amount:.12g}")
    return "".join(parts)


_SCALARS = (str, int, float, bool, np.generic)


def _first_value(series: pd.Series) -> object:
    nonnull = series.dropna()
    return nonnull.iloc[0] if len(nonnull) else None


def _is_scalar_column(series: pd.Series) -> bool:
    if series.dtype != object:
        return True
    return all(isinstance(v, _SCALARS) or v is None for v in series)


def _load_matminer(name: str, target_col: str | None) -> tuple[pd.DataFrame, dict]:
    import matminer.datasets as mmd

    info = _matminer_dataset(name)
    url = _matminer_attr(name, "url", "") or ""
    expected = _matminer_attr(name, "hash")
    home = cache_dir()
    path = _matminer_cache_path(name)
    existed = path.is_file()
    if existed:
        if expected and sha256_of(path) != expected:
            raise InputError(
                f"{path}: cached dataset {name} does not match matminer's sha256 (incomplete or altered "
                "download); delete the file to download it again"
            )
    else:
        _check_reachable(name, url)
    try:
        # matminer prints progress to stdout: keep stdout clean for the CLI's own output
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings(), download_timeouts():
            warnings.simplefilter("ignore")
            raw = mmd.load_dataset(name, data_home=str(home), pbar=False)
    except Exception as exc:  # noqa: BLE001 - requests/urllib3/OSError/hash UserWarning/json errors
        if existed:
            raise InputError(f"{path}: cannot read cached dataset {name}: {_short_reason(exc)}") from None
        if path.is_file():  # a partial download would be read later without a hash check
            with contextlib.suppress(OSError):
                path.unlink()
        raise InputError(f"dataset {name} could not be downloaded (no network?): {_short_reason(exc)}"
                         f"{_offline_route(name, url)}") from None
    if not path.is_file():
        raise InputError(f"dataset {name}: matminer loaded it but {path} does not exist")
    sha = sha256_of(path)
    if expected and sha != expected:
        raise InputError(f"{path}: downloaded dataset {name} does not match matminer's sha256; delete it and retry")

    frame = pd.DataFrame(raw).reset_index(drop=True)
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    lower = {c.lower(): c for c in columns}
    candidates = [lower[c] for c in FORMULA_COLUMNS if c in lower]
    if candidates:
        formula_col = candidates[0]
    else:
        objects = [c for c in columns if frame[c].dtype == object and hasattr(_first_value(frame[c]), "composition")]
        if not objects:
            raise InputError(
                f"dataset {name}: no formula column (looked for {', '.join(FORMULA_COLUMNS)} or a structure "
                f"column); columns are {', '.join(columns)}"
            )
        formula_col = objects[0]
    formulas = frame[formula_col].map(_formula_string)

    described = _matminer_attr(name, "columns", {}) or {}
    if target_col is not None:
        target = _match_column(target_col, [c for c in columns if c != formula_col])
        values = None
        if target is not None:
            values = pd.to_numeric(frame[target].map(lambda v: float(v) if isinstance(v, bool) else v),
                                   errors="coerce")
        if target is None or values.notna().sum() == 0:
            valid = _numeric_columns(frame, exclude=(formula_col,))
            why = "no column" if target is None else "not a numeric column"
            raise InputError(f"dataset {name}: {why} {target_col!r}; numeric columns: {', '.join(valid) or 'none'}")
    else:
        numeric = _numeric_columns(frame, exclude=(formula_col,))
        marked = _matminer_target_column(name)
        if marked in numeric:
            target = marked
        elif len(numeric) == 1:
            target = numeric[0]
        else:
            raise InputError(
                f"dataset {name}: {'no numeric column' if not numeric else 'several numeric columns'}; "
                f"choose the target with --target-col{': ' + ', '.join(numeric) if numeric else ''}"
            )
        values = frame[target]
    target_values = pd.to_numeric(values, errors="coerce").astype(np.float64)

    # the returned frame: formula, target, then the other scalar columns (other formula-like,
    # structure/dict/list columns are dropped; "line" and "target" would clash with the table reader)
    drop = set(candidates) | {formula_col, "line", "target"}
    rest = [c for c in columns if c not in drop and _is_scalar_column(frame[c])]
    out = pd.concat(
        [pd.DataFrame({"formula": formulas, "target": target_values}), frame[rest].reset_index(drop=True)],
        axis=1,
    )
    provenance = {
        "name": name, "source": info.source, "target": target,
        "unit": _unit_from(target, str(described.get(target, ""))),
        "path": str(path), "sha256": sha,
    }
    return out, provenance


# --------------------------------------------------------------------------------------------------
# public API

def is_named_dataset(name: str) -> bool:
    """True for our dataset names and for every dataset name in matminer's metadata (no network)."""
    return name in BUILTIN or name in _matminer_names()


def _known_names() -> list[str]:
    return list(BUILTIN) + sorted(_matminer_names())


def list_datasets() -> list[dict]:
    """One dict per named dataset: name, description, rows, target, targets, unit, offline, source.

    ``offline`` is True when loading needs no network now (bundled, or already in the user cache).
    ``rows`` is the number of rows :func:`load_named_dataset` returns for the bundled datasets and
    matminer's ``num_entries`` for the others. ``target`` is None where ``target_col`` must choose.
    """
    out = []
    for ds in BUILTIN.values():
        rows = None
        available = False
        try:
            if ds is EXPT:
                rows = len(_expt_table()[0])
            else:
                rows = len(_transport_table()[0])
            available = True
        except InputError:
            pass
        out.append({"name": ds.name, "description": ds.description, "rows": rows,
                    "target": ds.target or None, "targets": list(ds.targets), "unit": ds.unit,
                    "offline": available, "source": ds.source})
    for name in sorted(_matminer_names()):
        ds = _matminer_dataset(name)
        rows = _matminer_attr(name, "num_entries")
        out.append({"name": name, "description": ds.description,
                    "rows": int(rows) if rows is not None else None,
                    "target": ds.target or None, "targets": [], "unit": ds.unit,
                    "offline": _matminer_cache_path(name).is_file(), "source": ds.source})
    return out


def load_named_dataset(name: str, target_col: str | None = None, require_target: bool = True
                       ) -> tuple[pd.DataFrame, dict]:
    """Load a named dataset as (frame, provenance).

    The frame has ``formula`` (str), ``target`` (float64) and other useful source columns. The
    provenance dict has ``name``, ``source``, ``target`` (the source column used), ``unit``, ``path``
    (the file read) and ``sha256`` (of that file). Raises :class:`InputError` (one line) for an
    unknown name, a ``target_col`` that is not a valid target, or a download that is needed but fails.
    ``require_target=False`` (predict): a dataset of several properties loads without a target.
    """
    if name == EXPT.name:
        return _load_expt(target_col)
    if name == TRANSPORT.name:
        return _load_transport(target_col, require_target)
    if name in _matminer_names():
        return _load_matminer(name, target_col)
    raise InputError(f"unknown dataset {name!r}; known: {', '.join(_known_names())}")
