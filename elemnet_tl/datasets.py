"""Load a table of formulas and targets from a file or a named dataset."""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import io
import lzma
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

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

    @property
    def target_name(self) -> str:
        """The target's name as the user knows it: a named dataset's name for it, else the column's."""
        return str(self.provenance.get("target") or self.target_col or "target").strip() or "target"

    def target_note(self) -> str | None:
        """A line naming the target column when it was guessed (not given, not named ``target``), or when a
        validation/test file names it otherwise than the training data."""
        other = self.provenance.get("target_column_of_training")
        if other is not None:
            return (f"{self.source}: target taken from column '{self.target_col}' (it has no column '{other}', "
                    "the training data's target)")
        if not self.provenance.get("target_guessed"):
            return None
        return (f"{self.source}: target taken from column '{self.target_col}', the only numeric column besides "
                "ids, row numbers, errors and predictions; "
                "name another with --target-col")

    def looks_like_formation_energy(self) -> bool:
        """True when the target's name (or the dataset/file name) says formation energy/enthalpy."""
        names = [self.target_col or "", str(self.provenance.get("target", "")), Path(self.source).name]
        return any(_FORMATION_RE.search(n.replace("-", "_")) for n in names)

    def stability_column(self) -> str | None:
        """A column other than the target whose name says stability (formation energy, energy above hull):
        the first such column that is mostly numbers, else the first such column (the caller says why it is
        unusable)."""
        named = [str(c) for c in self.frame.columns
                 if c not in ("line", "formula", "target") and c != self.target_col and _STABILITY_RE.search(str(c))]
        return next((c for c in named if numeric_like(self.frame[c])), named[0] if named else None)


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_SPREADSHEETS = (".xlsx", ".xls", ".xlsm", ".ods", ".numbers")


_COMPRESSIONS = (".gz", ".bz2", ".xz", ".zip", ".zst")
"""Suffixes pandas decompresses by; the sniffing below reads through the same decompression."""


def _compression(path: Path) -> str:
    """The compression suffix of ``path`` (``.gz``...), or ``""``."""
    return next((s for s in _COMPRESSIONS if path.name.lower().endswith(s)), "")


def _open_bytes(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed by suffix as pandas does."""
    suffix = _compression(path)
    if suffix in (".gz", ".bz2", ".xz"):
        return {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}[suffix](path, "rb")
    if suffix == ".zip":
        archive = zipfile.ZipFile(path)
        members = [n for n in archive.namelist() if not n.endswith("/") and not n.startswith("__MACOSX/")]
        if len(members) != 1:
            raise InputError(f"{path}: the zip archive holds {len(members)} files; give a zip with one table file")
        return archive.open(members[0])
    if suffix == ".zst":
        try:
            import zstandard
        except ImportError:
            raise InputError(f"{path}: .zst compression is not supported here; decompress the file "
                             "(or use .gz, .bz2, .xz, .zip)") from None
        return zstandard.open(path, "rb")
    return open(path, "rb")


def _pandas_read(reader, path: Path, **options) -> pd.DataFrame:
    """``reader(path, **options)``; a zip is opened here (its one table file, folders and macOS
    ``__MACOSX/`` entries skipped), since pandas refuses a zip with more than one entry."""
    if _compression(path) != ".zip":
        return reader(path, **options)
    with _open_bytes(path) as fh:
        return reader(fh, **options)


def _open_text(path: Path) -> IO[str]:
    """The file's text (decompressed; undecodable bytes replaced), for the csv module."""
    return io.TextIOWrapper(_open_bytes(path), encoding="utf-8-sig", errors="replace", newline="")


def _sniff_separator(path: Path) -> str:
    """The separator that splits the header line into the most fields and the first row into as many (quotes
    respected): ``,``, else ``;`` or tab (spreadsheet exports in some locales; ``id;formula;E (eV, per atom)``
    is ``;``-separated, ``formula,"gap (eV; PBE)"`` is ``,``-separated); a tie goes to ``,``."""
    try:
        with _open_text(path) as fh:
            header, first = fh.readline(), fh.readline()
    except (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile):
        return ","  # pandas names what is wrong with the file

    def width(line: str, sep: str) -> int:
        try:
            return len(next(csv.reader([line], delimiter=sep), []))
        except csv.Error:  # a field longer than the csv module's limit: pandas reads it; count nothing here
            return -1

    fields = {sep: width(header, sep) for sep in (",", ";", "\t")}
    firsts = {sep: width(first, sep) for sep in fields} if first.strip() else {}
    if firsts and -1 not in firsts.values():  # a separator must split the first row as it splits the header
        fields = {sep: n if firsts[sep] == n else 0 for sep, n in fields.items()}
    best = max(fields, key=lambda sep: fields[sep])  # the first of equal counts: ","
    return best if fields[best] > 1 else ","


_MAGIC = ((b"\x1f\x8b", "gzip-compressed (name it .csv.gz)"),
          (b"PK\x03\x04", "a zip archive or a spreadsheet (a zipped CSV: name it .csv.zip; a sheet: save it as CSV)"),
          (b"PAR1", "a parquet file (name it .parquet)"), (b"\x89PNG", "a PNG image, not a table"),
          (b"%PDF", "a PDF document, not a table"), (b"\xff\xfe", "UTF-16 text (save it as UTF-8)"),
          (b"\xfe\xff", "UTF-16 text (save it as UTF-8)"),
          (b"\xd0\xcf\x11\xe0", "an old Excel (.xls) or Office file (save the sheet as CSV)"))
"""First bytes of files that are not UTF-8 text tables, and what to say about them."""


def _binary_kind(path: Path) -> str | None:
    """What a file that does not decode as UTF-8 is, from its first bytes (None: not recognised)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return None
    kind = next((what for magic, what in _MAGIC if head.startswith(magic)), None)
    return None if kind is None else f"the file is {kind}"


def _first_bad_line(path: Path) -> int:
    """1-based number of the first line that is not valid UTF-8 (0 if none is found)."""
    with _open_bytes(path) as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 0


def _check_unique(names: list[str], source: object) -> None:
    """Raise :class:`InputError` when a column name (other than an empty one) appears twice."""
    filled = [n for n in names if n.strip()]
    twice = next((n for n in filled if filled.count(n) > 1), None)
    if twice is not None:
        raise InputError(f"{source}: column {twice!r} appears {filled.count(twice)} times in the header; "
                         "rename or remove the copies")


def _read_csv(path: Path, sep: str, decimal: str) -> pd.DataFrame:
    """Read a CSV/TSV; empty fields after the header's last column (a trailing comma) are dropped.

    pandas would take the first column(s) as the index when rows have more fields than the header, and
    shift every column; a value in such a field is an :class:`InputError` naming its line, unless every
    row has one more field: then the first is a row name without a header name (R's ``write.table``).
    """
    with _open_text(path) as fh:
        header = next(csv.reader(fh, delimiter=sep), [])
    if header and re.fullmatch(r"sep=.?", header[0].strip()) and all(not h.strip() for h in header[1:]):
        raise InputError(f"{path}: line 1 ({sep.join(header).strip()!r}) is a spreadsheet's separator hint, not the "
                         "header; remove that line")
    _check_unique(header, path)
    options = {"sep": sep, "decimal": decimal, "skip_blank_lines": False}
    implicit = None
    try:
        frame = _pandas_read(pd.read_csv, path, **options)
        if isinstance(frame.index, pd.RangeIndex):
            return frame
        implicit = frame  # pandas took the leading field(s) of every row as row names
    except pd.errors.ParserError as exc:  # a row after the first has more fields than the header
        if not re.search(r"Expected \d+ fields in line \d+, saw \d+", str(exc)):
            raise
    with _open_text(path) as fh:
        width = max((len(row) for row in csv.reader(fh, delimiter=sep)), default=0)
    names = [name or f"Unnamed: {i}" for i, name in enumerate(header)]
    extra = [f"\0extra{i}" for i in range(len(names), width)]
    frame = _pandas_read(pd.read_csv, path, header=None, skiprows=1, names=names + extra,
                         dtype=dict.fromkeys(extra, str), **options)
    filled = frame[extra].map(lambda v: not pd.isna(v) and str(v).strip() != "").to_numpy()
    rows = np.flatnonzero(filled.any(axis=1))
    if len(rows) and len(header) == 1 and header[0].lstrip().startswith("#"):
        raise InputError(f"{path}: line 1 ({header[0][:40]!r}) looks like a comment; the first line must be the "
                         "header (column names): remove the comment lines")
    if implicit is not None and len(extra) == 1 and filled[:, 0].all():
        # every row has one more field than the header: row names without a header name (R's write.table)
        return implicit.reset_index(drop=True)
    if len(rows):
        field = int(np.argmax(filled[rows[0]]))
        raise InputError(f"{path}: line {rows[0] + 2} has a value beyond the header's {len(names)} columns "
                         f"({frame[extra[field]].iloc[rows[0]]!r} in field {len(names) + field + 1}); "
                         "remove it or name its column in the header")
    return frame.drop(columns=extra)


_COMMA_NUMBER = re.compile(r"^\s*[+-]?(\d+,\d*|,\d+)([eE][+-]?\d+)?\s*$")


def _comma_decimals(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells that are decimal-comma numbers (``0,7593``) written with a point: pandas converts a
    column of a ``decimal=","`` read only when every cell is a number, so one bad cell (``n/a``) left
    every value of the column as text, and each would have been rejected as not a number."""
    for col in frame.columns:
        if pd.api.types.is_object_dtype(frame[col]):
            frame[col] = frame[col].map(
                lambda v: v.replace(",", ".") if isinstance(v, str) and _COMMA_NUMBER.match(v) else v)
    return frame


def _record_lines(path: Path, sep: str, n_rows: int) -> np.ndarray:
    """The file line on which each of the ``n_rows`` data rows of a CSV/TSV starts: 2, 3, ... unless a quoted
    field spans lines (a note with a line break), which the csv module follows as pandas does."""
    with _open_text(path) as fh:
        physical = sum(1 for _ in fh)
    if physical <= n_rows + 1:  # one line per row (and the header): the common case, no second pass
        return np.arange(n_rows) + 2
    starts = []
    limit = csv.field_size_limit()
    try:
        csv.field_size_limit(2**31 - 1)  # pandas reads fields of any length; so must this pass
        with _open_text(path) as fh:
            reader = csv.reader(fh, delimiter=sep)
            next(reader, None)
            end = reader.line_num
            for _ in reader:
                starts.append(end + 1)
                end = reader.line_num
    except csv.Error:  # what pandas read, the csv module does not: rows numbered one per line
        starts = []
    finally:
        csv.field_size_limit(limit)
    return np.asarray(starts[:n_rows]) if len(starts) >= n_rows else np.arange(n_rows) + 2


def _read_file(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Read CSV / TSV / parquet / JSON (text formats also .gz, .bz2, .xz, .zip); returns the frame and each
    row's number.

    That number is the row's line in the file for CSV/TSV (from 2: the header is line 1; a quoted field
    spanning lines counts them) and JSON lines (from 1: no header), and its 1-based position for parquet
    and JSON.
    """
    name = path.name.lower()
    base = name.removesuffix(_compression(path))
    try:
        if name.endswith((".parquet", ".pq")):
            frame = pd.read_parquet(path)
            return frame, np.arange(len(frame)) + 1
        kind = None if _compression(path) or name.endswith(_SPREADSHEETS) else _binary_kind(path)
        if kind:  # a text table's name on another kind of file
            raise InputError(f"{path}: {kind}")
        if base.endswith((".json", ".jsonl")):
            # JSON has types: "007" stays a string, a date-like name stays text
            frame = _pandas_read(pd.read_json, path, lines=base.endswith(".jsonl"), dtype=False, convert_dates=False)
            return frame, np.arange(len(frame)) + 1
        if name.endswith(_SPREADSHEETS):
            raise InputError(f"{path}: spreadsheet files are not read; save the sheet as CSV (comma-separated, "
                             "UTF-8) and give that file")
        sep = "\t" if base.endswith(".tsv") else _sniff_separator(path)
        if sep == ";":  # ';'-separated exports write decimal commas
            frame = _comma_decimals(_read_csv(path, sep, ","))
        else:
            frame = _read_csv(path, sep, ".")
        return frame, _record_lines(path, sep, len(frame))
    except InputError:
        raise
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the file is empty") from None
    except UnicodeDecodeError:
        kind = _binary_kind(path)
        raise InputError(f"{path}: {kind}" if kind else
                         f"{path}: line {_first_bad_line(path)} is not UTF-8 text; save the file as UTF-8") from None
    except Exception as exc:  # pandas/pyarrow raise many types for unreadable files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if base.endswith(".json") and "Trailing data" in reason:
            reason += " (one JSON record per line is JSON Lines: name the file .jsonl)"
        raise InputError(f"{path}: cannot read as a table: {reason}") from None


def _written_text(source: object, n_rows: int) -> pd.DataFrame | None:
    """Every cell of a CSV/TSV file as the file writes it (text; nothing read as missing), or None for other
    formats, named datasets, or a file that does not read back as ``n_rows`` rows."""
    path = Path(str(source))  # a named dataset's archive (its provenance path) is not the user's CSV
    base = path.name.lower().removesuffix(_compression(path))
    if not path.is_file() or base.endswith((".parquet", ".pq", ".json", ".jsonl", *_SPREADSHEETS)):
        return None
    sep = "\t" if base.endswith(".tsv") else _sniff_separator(path)
    try:
        text = _pandas_read(pd.read_csv, path, sep=sep, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except Exception:  # read once already; whatever differs here, the parsed values stay
        return None
    text.columns = [c.strip() for c in text.columns]
    return text if len(text) == n_rows and isinstance(text.index, pd.RangeIndex) else None


_INTEGER = r"\s*[+-]?\d+\s*"
_ZERO_PADDED = r"\s*[+-]?0\d+\s*"
EXACT_INTEGERS = 2**53
"""Integers beyond this lose digits as floats (two ids 90071992547409931 and ...32 would read the same)."""


def _numbers_changed(written: pd.Series, parsed: pd.Series, is_id: bool) -> bool:
    """True when reading a numeric column changed what identifies its cells: zero-padded ids (``007`` -> 7),
    integers too long for a float, or (``is_id``: an id-named column) whole numbers made floats by a blank
    cell (``123456`` -> 123456.0; a measured column such as ``temperature_K`` stays numeric)."""
    filled = written[written.str.strip() != ""]
    if filled.str.fullmatch(_ZERO_PADDED).any():
        return True
    whole = filled.str.fullmatch(_INTEGER)
    if not len(filled) or not whole.all():
        return False
    return (is_id and pd.api.types.is_float_dtype(parsed)) or bool(
        filled.map(lambda v: abs(int(v)) > EXACT_INTEGERS).any())


def cells_as_written(table: Table, columns: list[str]) -> dict[str, pd.Series]:
    """Columns of a CSV/TSV table whose cells pandas changed in a way that breaks a join, as the file writes
    them: a numeric column of ids (zero-padded, whole numbers with a blank cell, integers beyond 2**53; see
    :func:`_numbers_changed`), and in a text column the cells read as missing (``NA``, ``None``) with their
    words back; numbers that are only spelled differently (``1.50``, ``1,5``) stay numbers. Other formats,
    named datasets, or a file that does not read back row for row: nothing."""
    text = _written_text(table.source, len(table.frame))
    if text is None:
        return {}
    out = {}
    for col in columns:
        if col not in text.columns or col not in table.frame.columns:
            continue
        parsed, written = table.frame[col].reset_index(drop=True), text[col]
        if pd.api.types.is_numeric_dtype(parsed):  # numbers stay numbers, unless they are ids
            if _numbers_changed(written, parsed, _never_target(col)):
                out[col] = written
        else:  # text: only the cells pandas read as missing (NA, None, n/a) get their words back
            lost = (parsed.isna() & (written.str.strip() != "")).to_numpy()
            if lost.any():
                out[col] = parsed.astype(object).where(~lost, written)
    return out


def _find_column(frame: pd.DataFrame, wanted: str | None, candidates: tuple[str, ...], what: str,
                 source: str) -> str:
    columns = [str(c) for c in frame.columns]
    if wanted is not None:
        wanted = wanted.strip()  # the header's names are stripped too
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
        comment = (f"; line 1 looks like a comment ({columns[0][:40]!r}): the first line must be the header "
                   "(column names)" if columns and columns[0].startswith("#") else "")
        raise InputError(
            f"{source}: no {what} column (looked for {', '.join(candidates)}); "
            f"columns are {', '.join(columns)}; name it with --{what}-col{comment}"
        )
    raise InputError(f"{source}: ambiguous {what} column ({', '.join(found)}); choose one with --{what}-col")


def numeric_like(column: pd.Series) -> bool:
    """A numeric column, or a text column whose filled cells are mostly numbers.

    One bad cell (``-0.95 eV``, ``unknown``) makes pandas read a column as text; it is still the
    target, and the bad cells are rejected row by row with a reason.
    """
    if pd.api.types.is_bool_dtype(column):
        return False
    if pd.api.types.is_numeric_dtype(column):
        return bool(column.notna().any())  # an empty column (pandas reads it as float) holds no target
    if not pd.api.types.is_object_dtype(column) and not pd.api.types.is_string_dtype(column):
        return False
    filled = column[column.notna() & (column.astype(str).str.strip() != "")]
    if filled.empty:
        return False
    return bool(pd.to_numeric(filled, errors="coerce").notna().mean() > 0.5)


_NOT_TARGETS = ("line", "id", "index", "error", "uncertainty", "prediction", "ensemble_std", "unseen_elements")
"""Numeric columns never guessed as the target: row numbers, ids, and errors/predictions (predict's own output
read back)."""
_INDEX_RE = re.compile(r"^(Unnamed: \d+|)$")
"""A column without a header name (pandas' ``to_csv`` index): row numbers, never the target."""
_INPUT_SUFFIX = re.compile(r" \(input(?: \d+)?\)$")
"""The suffix an output gives an input column whose name it uses itself (``line (input)``)."""
_ID_NAME = re.compile(r"^(u?id|ids|idx|index|row|no|nr|num|number|line|sample|entry|#)$"
                      r"|[\s_.-](u?id|ids|idx|no|nr)$|^(u?id|idx)[\s_.-]")
"""Names of id and row-number columns (``sample_no``, ``icsd_id``, ``mp-id``, ``uid``, ``#``), never guessed as the
target either: a table of formulas and sample numbers has no target (``refractive_index``, ``atomic_number``
are properties: only ``_id``, ``_no``-like endings mark ids)."""


def _never_target(name: str) -> bool:
    """A column that is never guessed as the target (:data:`_NOT_TARGETS`, :data:`_ID_NAME`, an unnamed index)."""
    base = _INPUT_SUFFIX.sub("", name).strip().lower()
    return base in _NOT_TARGETS or bool(_ID_NAME.search(base)) or bool(_INDEX_RE.match(name))


def input_name(name: str, taken: set[str]) -> str:
    """``name (input)``, else ``name (input 2)``, ...: the first that is not in ``taken`` (an output's name for an
    input column whose name the output uses itself; a file read back twice keeps every column)."""
    candidate, k = f"{name} (input)", 2
    while candidate in taken:
        candidate, k = f"{name} (input {k})", k + 1
    return candidate


def _companion_column(frame: pd.DataFrame, names: tuple[str, ...], find: Callable[[str | None], str | None],
                      what: str, source: str) -> str | None:
    """The first column of ``names`` (the training data's) in a validation/test file, else the one
    ``find(None)`` picks there; the error names both ways out when neither works."""
    lower = {str(c).lower(): str(c) for c in frame.columns}
    for name in names:
        if name.strip().lower() in lower:
            return lower[name.strip().lower()]
    wanted = names[0]
    try:
        return find(None)
    except InputError as error:
        reason = str(error).removeprefix(f"{source}: ").split("; choose")[0].split("; name it")[0]
        raise InputError(f"{source}: no column {wanted!r} as in the training data, and {reason}; rename its "
                         f"{what} column to {wanted!r}") from None


_MISSING_WORDS = r"(nan|na|n/a|none|null|-+|\?|)"
"""Cells that hold no value (besides those pandas already reads as missing)."""


def _find_target(frame: pd.DataFrame, formula_col: str, wanted: str | None, source: str,
                 required: bool, exclude: tuple[str, ...] = (), optional: bool = False) -> str | None:
    """The target column's name. Not ``required``: None where none is found; ``optional`` (with
    ``required=False``): None only where the table has no numeric column, several are still an error."""
    if wanted is not None:
        return _find_column(frame, wanted, (), "target", source)
    columns = [str(c) for c in frame.columns if str(c) != formula_col]
    named = [c for c in columns if c.lower() == "target"]
    if len(named) == 1:
        return named[0]
    numeric = [
        c for c in columns
        if c not in exclude and not _never_target(c) and numeric_like(frame[c])
    ]
    if len(numeric) == 1:
        return numeric[0]
    formula_holds_numbers = not numeric and numeric_like(frame[formula_col])
    if not required and not (optional and (numeric or formula_holds_numbers)):
        return None
    if not numeric:
        swapped = (f"; the formula column {formula_col!r} holds numbers: check --formula-col"
                   if formula_holds_numbers else "")
        empty = [c for c in columns if not _never_target(c)  # only blanks, NaN, n/a, ?
                 and frame[c].dropna().astype(str).str.strip().str.fullmatch(_MISSING_WORDS, case=False).all()]
        held = f" ({', '.join(map(repr, empty))}: no number in any row)" if empty else ""
        raise InputError(f"{source}: no numeric target column{held}; columns are "
                         f"{', '.join(map(str, frame.columns))}; name it with --target-col{swapped}")
    raise InputError(f"{source}: ambiguous target column ({', '.join(numeric)}); choose one with --target-col")


def _named_target(frame: pd.DataFrame, formula_col: str, names: tuple[str, ...]) -> str | None:
    """The column named ``target``, else the first of ``names`` the table has (case and spaces aside)."""
    columns = {str(c).strip().lower(): str(c) for c in frame.columns if str(c) != formula_col}
    for name in ("target", *names):
        if name.strip().lower() in columns:
            return columns[name.strip().lower()]
    return None


def _unit_key(unit: str) -> str:
    """A unit spelled one way: ``eV per atom``, ``eV/atom`` and ``ev / Atom`` compare equal."""
    return re.sub(r"\s+", "", re.sub(r"\s+per\s+", "/", unit.strip().lower()))


def _is_named(name: str) -> bool:
    from . import named

    return named.is_named_dataset(name)


def run_folder(value: object) -> object:
    """A run's result object (``finetune``'s ``run_dir``, ``extract_features``' ``out_dir``) as its folder,
    so the API takes a run where it takes a run directory; any other value as given."""
    for attr in ("run_dir", "out_dir"):
        folder = getattr(value, attr, None)
        if isinstance(folder, (str, Path)):
            return folder
    return value


def check_source(value: object, name: str, what: str = "a file path or a named dataset") -> None:
    """:class:`InputError` (one line) unless ``value`` is None, a string or a path: the API takes files, not
    tables (a DataFrame's str is the whole table, over many lines) nor result objects."""
    if value is None or isinstance(value, (str, Path)):
        return
    hint = (": write it with df.to_csv('data.csv', index=False) and pass the path" if isinstance(value, pd.DataFrame)
            else f": pass its {'run_dir' if hasattr(value, 'run_dir') else 'out_dir'} as model (or source)"
            if run_folder(value) is not value else "")
    kind = type(value).__name__
    raise InputError(f"{name} must be {what}, got {'an' if kind[0].lower() in 'aeiou' else 'a'} {kind}{hint}")


def load_table(
    source: str | Path,
    formula_col: str | None = None,
    target_col: str | None = None,
    require_target: bool = True,
    exclude_from_target: tuple[str, ...] = (),
    like: Table | None = None,
    optional_target: bool = False,
    target_names: tuple[str, ...] | None = None,
    target_unit: str = "",
) -> Table:
    """Read a file (CSV, TSV, JSON, also .gz/.bz2/.xz/.zip; parquet) or a named dataset into a :class:`Table`.

    The formula column is found by name (``formula``, ``composition``, ``formula_pretty``,
    ``pretty_formula``, ``compound``; case-insensitive) unless ``formula_col`` names it. The target is
    ``target_col``, else a column named ``target``, else the only other numeric column (id columns aside).
    With ``require_target=False`` a table without a target loads (for prediction); with
    ``optional_target=True`` too, but a table with several numeric columns must name one; with
    ``target_names`` (a model's target, for prediction) the target is only a column named ``target`` or
    one of those names, and a column that would have been guessed is kept in ``target_not_taken``; a named
    dataset whose unit differs from ``target_unit`` (the model's) is not scored either.
    ``like``: the training table, when this is a validation or test file: its formula and target columns
    are those of the given names (``formula_col``/``target_col``, else the training table's), and where the
    file has no such column, the one found in it as above (the target's summary line says so).
    Raises :class:`InputError` with a one-line reason on a missing file, column or an empty table.
    """
    check_source(source, "data")
    text = str(source)
    path = Path(text)
    provenance: dict = {"source": text}
    if path.exists() and path.is_dir():
        raise InputError(f"{text}: is a directory, not a table file")
    if path.is_file():
        frame, lines = _read_file(path)  # line numbers as in the input file: a CSV header is line 1
        provenance.update(path=str(path.resolve()), sha256=sha256_of(path))
    elif _is_named(text):
        from . import named

        frame, info = named.load_named_dataset(text, target_col=target_col,
                                               require_target=target_names is None or target_col is not None)
        provenance.update({k: v for k, v in info.items() if k != "source"}, citation=info.get("source"))
        if target_col is not None and "target" in frame.columns:
            target_col = "target"
        lines = np.arange(len(frame)) + 1
    else:
        raise InputError(f"{text}: no such file or named dataset (see `elemtl datasets`)")
    if len(frame) == 0:
        raise InputError(f"{text}: the table has no rows")
    frame.columns = [str(c).strip() for c in frame.columns]  # ' formula ' is formula; JSON arrays' 0, 1: '0', '1'
    _check_unique([str(c) for c in frame.columns], text)
    if like is not None and path.is_file():
        fcol = _companion_column(frame, (formula_col or like.formula_col,),
                                 lambda w: _find_column(frame, w, FORMULA_COLUMNS, "formula", text), "formula", text)
        # a named dataset's target column is 'target'; its users know it by the dataset's name for it
        names = (target_col,) if target_col else tuple(
            str(n) for n in (like.provenance.get("target"), like.target_col) if n)
        tcol = None if not names else _companion_column(
            frame, names, lambda w: _find_target(frame, fcol, w, text, require_target, exclude_from_target,
                                                   optional_target),
            "target", text)
        if tcol is not None and names and tcol.lower() not in {n.strip().lower() for n in names}:
            provenance["target_column_of_training"] = names[0].strip()
    elif target_names is not None and target_col is None:  # a model's target: by its names only
        fcol = _find_column(frame, formula_col, FORMULA_COLUMNS, "formula", text)
        tcol = _named_target(frame, fcol, target_names)
        unused = None if tcol else _find_target(frame, fcol, None, text, False, exclude_from_target)
        unit = str(provenance.get("unit") or "")
        if tcol == "target" and provenance.get("name") and unit and target_unit and \
                _unit_key(unit) != _unit_key(target_unit):
            # a named dataset's target is another property than the model's: no score against it
            unused, tcol = "target", None
            provenance["target_not_taken_reason"] = (f"the dataset's target, {provenance.get('target')}, is in "
                                                     f"{unit}; the model predicts {target_unit}")
        if unused is not None:
            provenance["target_not_taken"] = unused
    else:
        fcol = _find_column(frame, formula_col, FORMULA_COLUMNS, "formula", text)
        tcol = _find_target(frame, fcol, target_col, text, require_target and not optional_target,
                            exclude_from_target, optional_target)
    if tcol is not None and tcol == fcol:
        raise InputError(f"{text}: the target column {tcol!r} is the formula column; "
                         "name a numeric column with --target-col")
    if tcol is not None:
        provenance["target_column"] = tcol
        provenance["target_guessed"] = (target_col is None and like is None and target_names is None
                                        and tcol.lower() != "target")
    frame = frame.reset_index(drop=True)
    formulas = frame[fcol].map(lambda v: v if isinstance(v, str) else (None if pd.isna(v) else str(v)))
    if formulas.isna().any():  # pandas reads NaN (sodium nitride), NA, None as missing: the file's words back
        cells = _written_text(path, len(frame))
        if cells is not None and fcol in cells.columns:
            written = cells[fcol].where(cells[fcol].str.strip() != "", None)
            formulas = formulas.where(formulas.notna(), written)
    out = pd.DataFrame({"line": lines, "formula": formulas})
    raw_target = None
    if tcol is not None:
        raw_target = frame[tcol].copy()
        out["target"] = pd.to_numeric(raw_target, errors="coerce").astype(np.float64)
    # the chosen columns become line/formula/target; other input columns of those names ride along renamed
    rest = frame[[c for c in frame.columns if c not in (fcol, tcol)]]
    taken = {*map(str, frame.columns), "line", "formula", "target"}
    renamed = {}
    for c in rest.columns:
        if c in ("line", "formula", "target"):
            renamed[c] = input_name(c, taken)
            taken.add(renamed[c])
    rest = rest.rename(columns=renamed)
    out = pd.concat([out, rest], axis=1)
    provenance["rows"] = int(len(out))
    return Table(out, text, fcol, tcol, provenance, raw_target)
