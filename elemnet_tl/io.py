"""Atomic file writes: a temp file in the target's folder, then a rename."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError

TABLE_SUFFIXES = (".csv", ".csv.gz", ".parquet")


def _file_mode() -> int:
    umask = os.umask(0)  # the only portable way to read the umask (once, at import)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()
"""Mode of a file made by ``open(path, "w")`` in this process."""


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise InputError(f"{path}: cannot write here: {exc.strerror or exc}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp (and safetensors) make the file private (0600): give it the mode a plain open() would
        os.chmod(tmp_path, _FILE_MODE)
        os.replace(tmp_path, path)
    except OSError as exc:  # disk full, quota, path is a folder...: the user's to fix, named in one line
        raise InputError(f"{path}: cannot write: {exc.strerror or exc}") from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | Path, text: str) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def jsonable(obj: object) -> object:
    """``obj`` as strict JSON reads it back: NaN and infinities become null (bare ``NaN`` is not JSON:
    jq and JavaScript reject it), numpy scalars plain numbers, tuples lists, anything else its str."""
    return json.loads(json.dumps(_finite(obj), default=str))


def _finite(obj: object) -> object:
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_json(path: str | Path, obj: object) -> None:
    """Write strict JSON (indented; NaN and infinities as null) atomically."""
    write_text(path, json.dumps(_finite(obj), indent=2, default=str, allow_nan=False) + "\n")


def check_table_suffix(path: str | Path) -> None:
    """Raise :class:`InputError` unless ``path`` ends in a table format we write."""
    if not str(path).lower().endswith(TABLE_SUFFIXES):
        raise InputError(f"{path}: output must end in {', '.join(TABLE_SUFFIXES)}")


def check_output(output: str | Path, source: str | Path) -> None:
    """Raise :class:`InputError` unless ``output`` is a table format we write and not the input file itself."""
    check_table_suffix(output)
    out = Path(output)
    if out.exists() and isinstance(source, (str, Path)) and Path(source).exists() and \
            out.resolve() == Path(source).resolve():
        raise InputError(f"{output}: is the input file; choose another output (the input would be overwritten)")


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a frame as CSV, CSV.gz or parquet (by extension), atomically."""
    check_table_suffix(path)
    name = str(path).lower()
    with atomic_path(path) as tmp:
        if name.endswith(".parquet"):
            try:
                frame.to_parquet(tmp, index=False)
            except (TypeError, ValueError) as exc:  # pyarrow: a text column with numbers in it (ids: 1, "b2")
                mixed = [c for c in frame.columns if frame[c].dtype == object
                         and frame[c].dropna().map(type).nunique() > 1]
                if not mixed:
                    raise InputError(f"{path}: cannot write as parquet: {exc}; write .csv instead") from None
                frame = frame.assign(**{c: frame[c].map(_text_or_none) for c in mixed})
                try:
                    frame.to_parquet(tmp, index=False)  # those columns as text, as a CSV would hold them
                except (TypeError, ValueError) as again:
                    raise InputError(f"{path}: cannot write as parquet: {again}; write .csv instead") from None
        else:
            frame.to_csv(tmp, index=False, compression="gzip" if name.endswith(".gz") else None)


def _text_or_none(value: object) -> str | None:
    """A cell as text; missing (None, NaN, pd.NA) as None."""
    try:
        missing = value is None or bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or array in a JSON cell
        missing = False
    return None if missing else str(value)


def table_stem(path: str | Path) -> Path:
    """``out.csv.gz`` -> ``out`` (in the same folder)."""
    path = Path(path)
    name = path.name
    for suffix in (".csv.gz", ".csv", ".parquet", ".json", ".tsv.gz", ".tsv"):
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)])
    return path.with_suffix("")
