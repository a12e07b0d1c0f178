"""Load a table of formulas and targets from a file or a named dataset."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError

FORMULA_COLUMNS = ("formula", "composition", "formula_pretty", "pretty_formula", "compound")
"""Column names recognised as the formula column (case-insensitive)."""

_FORMATION_RE = re.compile(r"e_?form|formation|enthalpy|delta_?e\b|\bdh\b|\bhf\b", re.IGNORECASE)
_STABILITY_RE = re.compile(
    r"e_?above_?hull|energy_above_hull|\be_?hull\b|e_?form|formation_energy|formation_enthalpy",
    re.IGNORECASE,
)


@dataclass
class Table:
    """Rows read from one source, before parsing.

    ``frame`` has columns ``line`` (line number in the input file, or 1-based row number for
    non-text formats), ``formula``, ``target`` (float, NaN where missing or not a number; absent when
    the table has no target) and every other input column.
    """

    frame: pd.DataFrame
    source: str
    """File path or dataset name, as the user gave it."""
    formula_col: str
    target_col: str | None
    provenance: dict = field(default_factory=dict)
    """``source``, ``sha256``, ``rows`` and, for named datasets, ``target``/``unit``."""
    raw_target: pd.Series | None = None
    """Target cells as read (to name bad values in rejection reasons)."""

    @property
    def has_target(self) -> bool:
        return self.target_col is not None

    def target_note(self) -> str | None:
        """A line naming the target column when it was guessed (not given, not named ``target``)."""
        if not self.provenance.get("target_guessed"):
            return None
        return (f"{self.source}: target taken from column '{self.target_col}', the only numeric column; "
                "name another with --target-col")

    def looks_like_formation_energy(self) -> bool:
        """True when the target's name (or the dataset/file name) says formation energy/enthalpy."""
        names = [self.target_col or "", str(self.provenance.get("target", "")), Path(self.source).name]
        return any(_FORMATION_RE.search(n.replace("-", "_")) for n in names)

    def stability_column(self) -> str | None:
        """A column other than the target that names stability (formation energy, energy above hull)."""
        for col in self.frame.columns:
            if col in ("line", "formula", "target") or col == self.target_col:
                continue
            if _STABILITY_RE.search(str(col)) and pd.api.types.is_numeric_dtype(self.frame[col]):
                return str(col)
        return None


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_SPREADSHEETS = (".xlsx", ".xls", ".xlsm", ".ods", ".numbers")


def _open_text(path: Path):
    """The file's raw bytes stream (gunzipped for .gz)."""
    import gzip

    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _sniff_separator(path: Path) -> str:
    """``,`` unless the header line has no comma but semicolons or tabs (spreadsheet exports in some locales)."""
    try:
        with _open_text(path) as fh:
            header = fh.readline().decode("utf-8", errors="replace")
    except OSError:
        return ","
    if "," in header:
        return ","
    if ";" in header:
        return ";"
    return "\t" if "\t" in header else ","


def _first_bad_line(path: Path) -> int:
    """1-based number of the first line that is not valid UTF-8 (0 if none is found)."""
    with _open_text(path) as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 0


def _read_file(path: Path) -> tuple[pd.DataFrame, int]:
    """Read CSV / CSV.gz / TSV / parquet / JSON; returns the frame and the number of its first row.

    That number is the row's line in the file for CSV/TSV (2: the header is line 1) and JSON lines
    (1: no header), and its 1-based position for parquet and JSON.
    """
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(path), 1
        if name.endswith((".json", ".json.gz", ".jsonl", ".jsonl.gz")):
            lines = ".jsonl" in name
            return pd.read_json(path, lines=lines), 1
        if name.endswith(_SPREADSHEETS):
            raise InputError(f"{path}: spreadsheet files are not read; save the sheet as CSV (comma-separated, "
                             "UTF-8) and give that file")
        sep = "\t" if name.endswith((".tsv", ".tsv.gz")) else _sniff_separator(path)
        decimal = "," if sep == ";" else "."  # ';'-separated exports write decimal commas
        return pd.read_csv(path, sep=sep, decimal=decimal, skip_blank_lines=False), 2
    except InputError:
        raise
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the file is empty") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: line {_first_bad_line(path)} is not UTF-8 text; save the file as UTF-8") from None
    except Exception as exc:  # pandas/pyarrow raise many types for unreadable files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: cannot read as a table: {reason}") from None


def _find_column(frame: pd.DataFrame, wanted: str | None, candidates: tuple[str, ...], what: str,
                 source: str) -> str:
    columns = [str(c) for c in frame.columns]
    if wanted is not None:
        if wanted in columns:
            return wanted
        lower = {c.lower(): c for c in columns}
        if wanted.lower() in lower:
            return lower[wanted.lower()]
        raise InputError(f"{source}: no column {wanted!r}; columns are {', '.join(columns)}")
    found = [c for c in columns if c.lower() in candidates]
    if len(found) == 1:
        return found[0]
    if not found:
        raise InputError(
            f"{source}: no {what} column (looked for {', '.join(candidates)}); "
            f"columns are {', '.join(columns)}; name it with --{what}-col"
        )
    raise InputError(f"{source}: ambiguous {what} column ({', '.join(found)}); choose one with --{what}-col")


def _numeric_like(column: pd.Series) -> bool:
    """A numeric column, or a text column whose filled cells are mostly numbers.

    One bad cell (``-0.95 eV``, ``unknown``) makes pandas read a column as text; it is still the
    target, and the bad cells are rejected row by row with a reason.
    """
    if pd.api.types.is_bool_dtype(column):
        return False
    if pd.api.types.is_numeric_dtype(column):
        return True
    if not pd.api.types.is_object_dtype(column) and not pd.api.types.is_string_dtype(column):
        return False
    filled = column[column.notna() & (column.astype(str).str.strip() != "")]
    if filled.empty:
        return False
    return bool(pd.to_numeric(filled, errors="coerce").notna().mean() > 0.5)


def _find_target(frame: pd.DataFrame, formula_col: str, wanted: str | None, source: str,
                 required: bool, exclude: tuple[str, ...] = ()) -> str | None:
    if wanted is not None:
        return _find_column(frame, wanted, (), "target", source)
    columns = [str(c) for c in frame.columns if str(c) != formula_col]
    named = [c for c in columns if c.lower() == "target"]
    if len(named) == 1:
        return named[0]
    numeric = [
        c for c in columns
        if c not in exclude and c.lower() not in ("line", "id", "index")
        and _numeric_like(frame[c])
    ]
    if len(numeric) == 1:
        return numeric[0]
    if not required:
        return None
    if not numeric:
        raise InputError(f"{source}: no numeric target column; columns are {', '.join(map(str, frame.columns))}; "
                         "name it with --target-col")
    raise InputError(f"{source}: ambiguous target column ({', '.join(numeric)}); choose one with --target-col")


def _is_named(name: str) -> bool:
    from . import named

    return named.is_named_dataset(name)


def load_table(
    source: str | Path,
    formula_col: str | None = None,
    target_col: str | None = None,
    require_target: bool = True,
    exclude_from_target: tuple[str, ...] = (),
) -> Table:
    """Read a file (CSV, CSV.gz, TSV, parquet, JSON) or a named dataset into a :class:`Table`.

    The formula column is found by name (``formula``, ``composition``, ``formula_pretty``,
    ``pretty_formula``, ``compound``; case-insensitive) unless ``formula_col`` names it. The target is
    ``target_col``, else a column named ``target``, else the only other numeric column.
    With ``require_target=False`` a table without a target loads (for prediction).
    Raises :class:`InputError` with a one-line reason on a missing file, column or an empty table.
    """
    text = str(source)
    path = Path(text)
    provenance: dict = {"source": text}
    if path.exists() and path.is_dir():
        raise InputError(f"{text}: is a directory, not a table file")
    if path.is_file():
        frame, first_line = _read_file(path)
        provenance.update(path=str(path.resolve()), sha256=sha256_of(path))
        # line numbers as in the input file: a CSV header is line 1
        lines = np.arange(len(frame)) + first_line
    elif _is_named(text):
        from . import named

        frame, info = named.load_named_dataset(text, target_col=target_col)
        provenance.update({k: v for k, v in info.items() if k != "source"}, citation=info.get("source"))
        if target_col is not None and "target" in frame.columns:
            target_col = "target"
        lines = np.arange(len(frame)) + 1
    else:
        raise InputError(f"{text}: no such file or named dataset (see `elemtl datasets`)")
    if len(frame) == 0:
        raise InputError(f"{text}: the table has no rows")
    fcol = _find_column(frame, formula_col, FORMULA_COLUMNS, "formula", text)
    tcol = _find_target(frame, fcol, target_col, text, require_target, exclude_from_target)
    if tcol is not None:
        provenance["target_column"] = tcol
        provenance["target_guessed"] = target_col is None and tcol.lower() != "target"
    out = frame.copy()
    raw_target = None
    out.insert(0, "line", lines)
    formulas = out.pop(fcol)
    out.insert(1, "formula", formulas.map(lambda v: v if isinstance(v, str) else (None if pd.isna(v) else str(v))))
    if tcol is not None:
        raw_target = out[tcol].copy()
        values = pd.to_numeric(raw_target, errors="coerce").astype(np.float64)
        out = out.drop(columns=list({tcol, "target"} & set(out.columns)))
        out.insert(2, "target", values.to_numpy())
    provenance["rows"] = int(len(out))
    return Table(out, text, fcol, tcol, provenance, raw_target)
