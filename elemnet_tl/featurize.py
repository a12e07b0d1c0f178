"""Table -> parsed, checked, deduplicated rows with element fractions (and physical attributes)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .compositions import DUPLICATE_RULES, KEY_DECIMALS, composition_keys, dedup, parse_formulas
from .datasets import Table, cells_as_written, input_name, load_table, numeric_like
from .elements import ELEMENTS
from .errors import InputError, plural
from .io import check_output, table_stem, write_table

REJECTED_COLUMNS = ["line", "formula", "reason"]


@dataclass
class Featurized:
    """The rows a command trains or predicts on, and what happened to the others."""

    table: Table
    frame: pd.DataFrame
    """Kept rows: ``line``, ``formula``, ``target`` (if any) and the other input columns."""
    fractions: np.ndarray
    """(n_kept, 86) float32 element fractions, aligned with ``frame``."""
    rejected: pd.DataFrame
    """``line, formula, reason`` of every rejected row."""
    n_read: int
    n_merged: int
    rule: str
    rule_reason: str
    extra: dict = field(default_factory=dict)
    merged_rows: pd.DataFrame | None = None
    """``line, formula, target, kept_line, kept_target`` of every row in a group of duplicates (None: none)."""

    @property
    def n_rejected(self) -> int:
        return len(self.rejected)

    @property
    def n_kept(self) -> int:
        return len(self.frame)

    @property
    def target(self) -> np.ndarray:
        """Targets of the kept rows (float64)."""
        return self.frame["target"].to_numpy(dtype=np.float64)

    def summary(self, held_out: int = 0) -> str:
        """Rows read, rejected, merged, kept and the duplicate rule; a second line if the target was guessed.
        ``held_out``: kept rows already taken from these for a test set (``--test-fraction``)."""
        held = f"; {held_out} of them held out for testing" if held_out else ""
        line = (f"{self.table.source}: {plural(self.n_read, 'row')} read, {self.n_rejected} rejected, "
                f"{self.n_merged} merged, {self.n_kept + held_out} kept (duplicates: {self.rule} — "
                f"{self.rule_reason}){held}")
        note = self.table.target_note()
        return f"{line}\n{note}" if note else line

    def record(self) -> dict:
        """Provenance (source, path, sha256, dataset name) and row counts, for a run's card."""
        keep = ("source", "path", "sha256", "name", "citation", "target_column")
        return {**{k: v for k, v in self.table.provenance.items() if k in keep}, **self.counts()}

    def counts(self) -> dict:
        return {"read": self.n_read, "rejected": self.n_rejected, "merged": self.n_merged, "kept": self.n_kept,
                "duplicates": self.rule, "duplicates_reason": self.rule_reason}


TARGET_LIMIT = float(np.finfo(np.float32).max)
"""Targets beyond this magnitude are rejected: the networks compute in float32 (3.4e38), and their squares
overflow the float64 statistics of every model."""


def target_reasons(table: Table) -> list[str | None]:
    """Why each row's target is unusable (None: usable): missing, not a number, infinite, beyond
    :data:`TARGET_LIMIT`."""
    values = table.frame["target"].to_numpy(dtype=np.float64)
    raw = table.raw_target.to_numpy() if table.raw_target is not None else values
    reasons: list[str | None] = []
    for value, cell in zip(values, raw):
        if math.isfinite(value) and abs(value) > TARGET_LIMIT:
            reasons.append(f"target {value:g} is beyond ±{TARGET_LIMIT:.1e}, the range a network computes in "
                           "(a typo or another unit?)")
        elif math.isfinite(value):
            reasons.append(None)
        elif math.isinf(value):
            reasons.append("infinite target")
        elif cell is None or (isinstance(cell, float) and math.isnan(cell)) or str(cell).strip() == "":
            reasons.append("missing target")
        elif str(cell).strip().lower() == "nan":
            reasons.append("target is NaN")
        else:
            reasons.append(f"target is not a number: {str(cell)[:40]!r}")
    return reasons


def _cell_without_number(table: Table, col: str, text_only: bool) -> tuple[int, str]:
    """Cells of ``col`` that are not numbers (only filled ones with ``text_only``): how many, and where the
    first is (``line 3: 'abc'``, or ``line 4: missing``: empty or a marker such as NA that pandas reads as
    missing); ``(0, "")`` when none."""
    cells = table.frame[col]
    missing = pd.to_numeric(cells, errors="coerce").isna().to_numpy()
    if text_only:
        missing &= (cells.notna() & (cells.astype(str).str.strip() != "")).to_numpy()
    if not missing.any():
        return 0, ""
    i = int(np.flatnonzero(missing)[0])
    cell = cells.iloc[i]
    shown = "missing" if pd.isna(cell) or not str(cell).strip() else repr(str(cell)[:40])
    return int(missing.sum()), f"line {table.frame['line'].iloc[i]}: {shown}"


def resolve_rule(table: Table, duplicates: str, stability_col: str | None) -> tuple[str, str | None, str]:
    """Turn ``--duplicates`` into a concrete rule; returns (rule, stability column, reason in words).

    A ``stability_col`` with a text cell is an :class:`InputError`; a column found by its name is used
    when it is mostly numbers. Either way the reason says which rows have no stability (ranked last) or
    why the found column was not used.
    """
    if duplicates not in DUPLICATE_RULES:
        raise InputError(f"--duplicates {duplicates!r}: choose from {', '.join(DUPLICATE_RULES)}")
    if stability_col is not None and stability_col == table.formula_col:
        raise InputError(f"{table.source}: the stability column {stability_col!r} is the formula column; "
                         "name a numeric column with --stability-col")
    if stability_col is not None and stability_col == table.target_col:  # the target itself marks stability
        if duplicates in ("auto", "most-stable"):
            return "most-stable", None, f"lowest {table.target_col} (the target) per composition"
        stability_col = None
    internal = ("line", "formula", "target")
    if stability_col is not None and (stability_col not in table.frame.columns or stability_col in internal):
        user_columns = [table.formula_col, *([table.target_col] if table.target_col else []),
                        *(str(c) for c in table.frame.columns if c not in internal)]
        raise InputError(f"{table.source}: no stability column {stability_col!r}; "
                         f"columns are {', '.join(user_columns)}")
    if duplicates == "keep":
        return "keep", None, "every row kept"
    if duplicates == "mean":
        return "mean", None, "duplicates averaged"
    col, note = stability_col or table.stability_column(), ""
    if col is not None:
        n_text, first_text = _cell_without_number(table, col, text_only=True)
        n_missing, first_missing = _cell_without_number(table, col, text_only=False)
        if stability_col is not None and (n_text or n_missing == len(table.frame)):
            raise InputError(f"{table.source}: stability column {col!r} is not numeric "
                             f"({first_text or 'it has no numbers'})")
        if not numeric_like(table.frame[col]):
            note = f"; {col} not used: not numeric ({first_text or 'it has no numbers'})"
            col = None
    if col is not None:
        why = f"lowest {col} per composition"
        if n_missing:
            why += f"; {plural(n_missing, 'row')} without a number in {col} ranked last (first: {first_missing})"
        return "most-stable", col, why
    if duplicates == "most-stable":
        return "most-stable", None, "lowest target per composition" + note
    if table.looks_like_formation_energy():
        return "most-stable", None, "target is a formation energy: lowest per composition" + note
    return "mean", None, "stability unknown: duplicates averaged" + note


def prepare(
    table: Table,
    duplicates: str = "auto",
    stability_col: str | None = None,
    require_target: bool = True,
) -> Featurized:
    """Parse formulas, reject bad rows with reasons, and apply the duplicate rule.

    Held-out test sets use ``duplicates="keep"``: every test row is scored.
    """
    frame = table.frame
    if require_target and not table.has_target:
        raise InputError(f"{table.source}: no target column")
    parsed = parse_formulas(frame["formula"].tolist())
    reasons = list(parsed.reasons)
    if table.has_target and require_target:
        for i, reason in enumerate(target_reasons(table)):
            if reasons[i] is None and reason is not None:
                reasons[i] = reason
    bad = np.array([r is not None for r in reasons], dtype=bool)
    rejected = pd.DataFrame({
        "line": frame["line"].to_numpy()[bad],
        "formula": frame["formula"].to_numpy()[bad],
        "reason": [r for r in reasons if r is not None],
    }, columns=REJECTED_COLUMNS)
    good = np.flatnonzero(~bad)
    kept_frame = frame.iloc[good].reset_index(drop=True)
    fractions = parsed.fractions[good]
    rule, col, why = (resolve_rule(table, duplicates, stability_col) if table.has_target
                      else ("keep", None, "no target column: every row kept"))
    n_merged = 0
    if rule != "keep" and len(good):
        # a text cell in the stability column counts as unknown stability (NaN sorts last)
        stability = pd.to_numeric(kept_frame[col], errors="coerce").to_numpy(dtype=np.float64) if col else None
        result = dedup(fractions, kept_frame["target"].to_numpy(), rule, stability)
        n_merged = len(result.merged)
        merged_rows = _merged_rows(kept_frame, fractions, result) if n_merged else None
        kept_frame = kept_frame.iloc[result.keep].reset_index(drop=True)
        kept_frame["target"] = result.target
        fractions = fractions[result.keep]
    else:
        merged_rows = None
    return Featurized(table, kept_frame, fractions.astype(np.float32), rejected, len(frame), n_merged, rule, why,
                      merged_rows=merged_rows)


def _merged_rows(frame: pd.DataFrame, fractions: np.ndarray, result) -> pd.DataFrame:
    """Every row of a group of duplicates, with the row kept for its composition and the target kept."""
    groups = composition_keys(fractions)
    rows = np.flatnonzero(np.bincount(groups)[groups] > 1)
    kept_of = {int(groups[k]): j for j, k in enumerate(result.keep)}  # group -> position among the kept rows
    kept = np.array([kept_of[int(groups[i])] for i in rows], dtype=int)
    lines = frame["line"].to_numpy()
    out = pd.DataFrame({"line": lines[rows], "formula": frame["formula"].to_numpy()[rows],
                        "target": frame["target"].to_numpy(dtype=np.float64)[rows],
                        "kept_line": lines[np.asarray(result.keep)[kept]], "kept_target": result.target[kept]})
    return out.sort_values(["kept_line", "line"], kind="stable").reset_index(drop=True)


def load_and_prepare(
    source: str | Path,
    formula_col: str | None = None,
    target_col: str | None = None,
    duplicates: str = "auto",
    stability_col: str | None = None,
    require_target: bool = True,
    like: Featurized | None = None,
    optional_target: bool = False,
    target_names: tuple[str, ...] | None = None,
    target_unit: str = "",
) -> Featurized:
    """:func:`load_table` then :func:`prepare`: the path every command's input takes. ``like``: the training
    data, when this is a validation or test file (its columns are looked up by the training data's names).
    ``optional_target``: a table with no numeric column loads without a target (every row kept); one that
    has a target is checked as a required one is. ``target_names``, ``target_unit``: see :func:`load_table`."""
    exclude = (stability_col,) if stability_col else ()
    table = load_table(source, formula_col, target_col, require_target=require_target, exclude_from_target=exclude,
                       like=like.table if like is not None else None, optional_target=optional_target,
                       target_names=target_names, target_unit=target_unit)
    if optional_target and not table.has_target and (duplicates not in ("auto", "keep") or stability_col):
        option = f"--duplicates {duplicates}" if duplicates not in ("auto", "keep") else "--stability-col"
        raise InputError(f"{source}: {option} needs a target column, and this table has none (columns: "
                         f"{', '.join(map(str, table.frame.columns[1:]))}); name one with --target-col")
    featurized = prepare(table, duplicates, stability_col,
                         require_target=table.has_target if optional_target else require_target)
    if featurized.n_kept == 0:
        first = featurized.rejected.iloc[0] if featurized.n_rejected else None
        where = (f"first: line {first['line']}, formula {first['formula']!r}: {first['reason']}"
                 if first is not None else "no rows")
        raise InputError(f"{source}: no usable rows ({featurized.n_rejected} rejected; {where})")
    return featurized


def shared_compositions(rows: np.ndarray, reference: np.ndarray) -> int:
    """How many of ``rows`` (element fractions) are a composition that also occurs in ``reference``."""
    if len(rows) == 0 or len(reference) == 0:
        return 0

    def keys(f: np.ndarray) -> np.ndarray:
        rounded = np.round(np.asarray(f, dtype=np.float64), KEY_DECIMALS) + 0.0
        return np.ascontiguousarray(rounded).view(np.dtype((np.void, rounded.shape[1] * 8))).ravel()

    return int(np.isin(keys(rows), keys(reference)).sum())


def check_several_compositions(data: Featurized) -> None:
    """Raise :class:`InputError` when every kept row has one composition: a model of composition alone has
    nothing to learn (only an average of the targets), and the feature regressors nothing to scale."""
    several_rows = data.n_kept > 1 or (data.n_kept == 1 and data.n_merged)  # one row alone: too few rows, said so
    if several_rows and len(np.unique(composition_keys(data.fractions))) == 1:
        merged = f" ({data.n_merged} rows merged into it as duplicates)" if data.n_merged else ""
        raise InputError(f"{data.table.source}: every kept row has one composition, {data.frame['formula'].iloc[0]}"
                         f"{merged}: a model of composition alone has nothing to learn; give rows of other "
                         "compositions")


def held_out_record(data: Featurized, train: Featurized) -> dict:
    """A validation or test file's card record: :meth:`Featurized.record` plus how many of its rows are
    compositions of the training data (their score flatters; 0 when none)."""
    return {**data.record(), "rows_in_training_data": shared_compositions(data.fractions, train.fractions)}


def overlap_warning(test: Featurized, train: Featurized, role: str = "test") -> str | None:
    """A warning when test (``role``: or validation) compositions also occur in the training data (the
    score flatters)."""
    n = shared_compositions(test.fractions, train.fractions)
    if not n:
        return None
    return (f"warning: {n} of {test.n_kept} {role} rows of {test.table.source} are compositions that are also in "
            f"the training data {train.table.source}: the {role} score will look better than on new compositions")


OUTLIER_RANGES = 100
"""A target value farther than this many 10-90 % ranges from the median gets a warning (on the 18
development and source sets the farthest is 40 ranges away: piezoelectric coefficients;
scripts/target_ranges.py); a few values typed in another unit (x1000) sit hundreds of ranges away and
dominate a small set's training loss."""
SKEW_DECADES = 3
"""A positive target whose 10-90 % range spans more decades than this gets a hint to fit its log (the
development sets: at most 2.7, slme, whose near-zeros a log would not suit; scripts/target_ranges.py)."""


def _targets_before_merging(data: Featurized) -> np.ndarray:
    """The distinct finite targets of the kept rows before ``mean`` averaged duplicates (rejected rows left out)."""
    values = np.asarray(data.target, dtype=np.float64)
    rows = data.merged_rows
    if rows is None or data.rule != "mean":
        return np.unique(values[np.isfinite(values)])
    singles = values[~data.frame["line"].isin(rows["kept_line"]).to_numpy()]
    read = np.concatenate([singles, rows["target"].to_numpy(dtype=np.float64)])
    return np.unique(read[np.isfinite(read)])


def target_warning(data: Featurized) -> str | None:
    """A warning when the kept target has one value (nothing to learn), two (a class label, which a
    regression fits as a score between the two) or values absurdly far from the rest (a typo or unit)."""
    if not data.table.has_target or not data.n_kept:
        return None
    values = np.unique(data.target)
    where = f"the target of {data.table.source}"
    if len(values) == 1:
        return (f"warning: {where} is {values[0]:g} on every kept row: there is nothing to learn, and every "
                "model will predict that value")
    read = _targets_before_merging(data)
    if len(values) == 2 or (len(read) == 2 and len(values) > 2):
        merged = ("" if len(values) == 2 else f"; averaging conflicting duplicates ({data.rule}) made "
                  f"{plural(len(values) - 2, 'value')} in between: --duplicates keep keeps the labels")
        two = values if len(values) == 2 else read
        return (f"warning: {where} takes only two values ({two[0]:g}, {two[1]:g}): if it is a class "
                "label, note that elemtl fits a regression (predictions are scores between the two; MAE "
                f"measures them){merged}")
    return outlier_warning(data) or skew_warning(data)


def skew_warning(data: Featurized) -> str | None:
    """A hint when a positive target spans more than :data:`SKEW_DECADES` decades in its 10-90 % range: the
    MAE (and the training loss) then hardly sees the small values; their log is often what to model."""
    target = np.asarray(data.target, dtype=np.float64)
    target = target[np.isfinite(target)]
    if len(target) < 3 or not (target > 0).all():
        return None
    p10, p90 = np.percentile(target, 10), np.percentile(target, 90)
    decades = math.log10(p90 / p10)
    if decades <= SKEW_DECADES:
        return None
    return (f"warning: the target of {data.table.source} is positive and spans {decades:.1f} decades in its 10-90 % "
            f"range ({p10:.3g} to {p90:.3g}): the MAE is made by the largest values; if relative errors matter, "
            "train on its log10 (and take 10**prediction)")


def outlier_warning(data: Featurized) -> str | None:
    """A warning when target values lie absurdly far from the rest (a typo or another unit): farther than
    :data:`OUTLIER_RANGES` times the 10-90 % range from the median."""
    if not data.table.has_target or not data.n_kept:
        return None
    target = np.asarray(data.target, dtype=np.float64)
    target_ok = np.isfinite(target)
    if target_ok.sum() < 3:
        return None
    values = target[target_ok]
    median = float(np.median(values))  # the range without interpolation: one wild value does not widen it
    p10, p90 = np.percentile(values, 10, method="higher"), np.percentile(values, 90, method="lower")
    far = np.flatnonzero(target_ok & (np.abs(target - median) > OUTLIER_RANGES * (p90 - p10))) if p90 > p10 else []
    if not len(far):
        return None
    first = far[np.argmax(np.abs(target[far] - median))]
    return (f"warning: the target of {data.table.source} has {plural(len(far), 'value')} more than "
            f"{OUTLIER_RANGES} times its 10-90 % range from the median {median:.4g} (the farthest: line "
            f"{data.frame['line'].iloc[first]}, {target[first]:g}): a typo or another unit? Such values dominate "
            "the training loss and the MAE")


def input_warnings(data: Featurized, train: Featurized | None = None, role: str = "test") -> list[str]:
    """The warnings every command prints about an input: for the training data (``train`` None) its target
    (:func:`target_warning`); for a validation or test file (``role``) its overlap with ``train`` and its
    outliers."""
    found = ([target_warning(data)] if train is None
             else [overlap_warning(data, train, role), outlier_warning(data)])
    return [w for w in found if w]


def rejected_path(output: str | Path) -> Path:
    """``out.csv.gz`` -> ``out.rejected.csv``."""
    stem = table_stem(output)
    return stem.with_name(stem.name + ".rejected.csv")


def check_outputs(output: str | Path, source: str | Path, merged: bool = True) -> None:
    """:func:`~elemnet_tl.io.check_output`, and the rejection report (and, with ``merged``, the merged-rows
    list) written beside ``output`` must not be the input file either (a report fixed by hand and read again
    would be overwritten or removed)."""
    check_output(output, source)
    lists = [("rejected-rows report", rejected_path(output))]
    if merged:
        lists.append(("merged-rows list", merged_path(rejected_path(output))))
    for what, report in lists:
        if report.exists() and isinstance(source, (str, Path)) and Path(source).exists() and \
                report.resolve() == Path(source).resolve():
            raise InputError(f"{output}: the {what} {report} beside it is the input file and would be "
                             "overwritten; choose another output name")


def write_rejected(featurized: Featurized, path: str | Path) -> Path | None:
    """Write the rejection report if any row was rejected; returns its path.

    With no rejected row, a report left at ``path`` by an earlier run is removed (it would be stale).
    """
    return _write_list(featurized, featurized.rejected if featurized.n_rejected else None, Path(path))


def _write_list(featurized: Featurized, rows: pd.DataFrame | None, path: Path) -> Path | None:
    """Write ``rows`` to ``path`` (None: remove a stale list there), never over the input file itself."""
    source = featurized.table.provenance.get("path")
    if source and path.exists() and path.resolve() == Path(source).resolve():
        if rows is None:
            return None  # the input: not stale, the user's
        raise InputError(f"{path}: is the input file; choose another output folder or name")
    if rows is None or not len(rows):
        path.unlink(missing_ok=True)
        return None
    write_table(rows, path)
    return path


def merged_path(rejected_report: str | Path) -> Path:
    """``x.rejected.csv`` -> ``x.merged.csv``: where the rows merged as duplicates are listed."""
    path = Path(rejected_report)
    return path.with_name(path.name.removesuffix(".rejected.csv") + ".merged.csv")


def write_merged(featurized: Featurized, rejected_report: str | Path) -> Path | None:
    """List the rows merged as duplicates beside the rejection report (:func:`merged_path`); returns its path,
    or None (and a stale list removed) when nothing was merged."""
    return _write_list(featurized, featurized.merged_rows, merged_path(rejected_report))


def merged_note(featurized: Featurized, path: Path) -> str:
    """The console line naming the merged-rows list."""
    rows = featurized.merged_rows
    groups = rows["kept_line"].nunique() if rows is not None else 0
    return (f"{plural(len(rows) if rows is not None else 0, 'row')} of {featurized.table.source} in "
            f"{plural(groups, 'group')} of duplicates ({featurized.rule}) listed in {path}")


def row_columns(featurized: Featurized, added: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """``line, formula, target`` and the input's other columns (ids, notes: as the file writes them) of the kept
    rows, so that an output joins back to the user's table; an input column named as one of ``added`` (the
    columns the caller appends) is renamed ``NAME (input)``."""
    kept = featurized.frame
    cols = {"line": kept["line"].to_numpy(), "formula": kept["formula"].to_numpy()}
    if "target" in kept:
        cols["target"] = kept["target"].to_numpy()
    others = [c for c in kept.columns if c not in cols]
    if others:
        table = featurized.table.frame
        written = cells_as_written(featurized.table, others)
        rows = pd.Series(np.arange(len(table)), index=table["line"].to_numpy())[kept["line"].to_numpy()].to_numpy()
        taken = {*kept.columns, *added}
        for c in others:
            name = input_name(c, taken) if c in added else c
            taken.add(name)
            cols[name] = written[c].to_numpy()[rows] if c in written else kept[c].to_numpy()
    return cols


def test_predictions_frame(test: Featurized, prediction: np.ndarray) -> pd.DataFrame:
    """A run's ``test_predictions.csv``: the test rows' :func:`row_columns` (ids as written) and ``prediction``."""
    cols = row_columns(test, ("prediction",))
    cols["prediction"] = np.asarray(prediction)
    return pd.DataFrame(cols)


def feature_frame(featurized: Featurized, pa: bool = False) -> pd.DataFrame:
    """:func:`row_columns`, then ``H ... Pu`` (+ ``pa_*``) for the kept rows; ``line`` is the row's line in the
    input file (a named dataset's row)."""
    if pa:
        from .physical import feature_labels
    cols = row_columns(featurized, (*ELEMENTS, *(feature_labels() if pa else ())))
    fractions = decimal_fractions(featurized.fractions)
    out = pd.concat([pd.DataFrame(cols), pd.DataFrame(fractions, columns=list(ELEMENTS))], axis=1)
    if pa:
        from .physical import physical_attributes_frame

        out = pd.concat([out, physical_attributes_frame(fractions)], axis=1)
    return out


def decimal_fractions(fractions: np.ndarray) -> np.ndarray:
    """float32 fractions as the float64 of their shortest decimal (Fe2O3's O: 0.6, not 0.6000000238)."""
    fractions = np.asarray(fractions)
    out = fractions.astype(np.float64)
    if fractions.dtype == np.float32:
        nonzero = fractions != 0
        out[nonzero] = fractions[nonzero].astype(str).astype(np.float64)
    return out


def featurize(
    source: str | Path,
    output: str | Path | None = None,
    duplicates: str = "auto",
    stability_col: str | None = None,
    pa: bool = False,
    formula_col: str | None = None,
    target_col: str | None = None,
) -> tuple[pd.DataFrame, Featurized]:
    """Featurize a table: element fractions (and physical attributes), one row per composition.

    With ``output`` the features are written there (csv, csv.gz or parquet) and rejected rows to
    ``<output stem>.rejected.csv``. A table with no numeric column (formulas only) gives features without
    a target, one row per parsed input row. Returns the feature frame and the :class:`Featurized` record.
    """
    if output is not None:
        check_outputs(output, source)
    featurized = load_and_prepare(source, formula_col, target_col, duplicates, stability_col, optional_target=True)
    frame = feature_frame(featurized, pa=pa)
    if output is not None:
        write_table(frame, output)
        write_rejected(featurized, rejected_path(output))
        write_merged(featurized, rejected_path(output))
    return frame, featurized
