"""Read, validate and write transaction files (the data-file contract of DESIGN.md).

Files are Parquet (``.parquet``) or CSV (``.csv``, ``.csv.gz``) with columns
transaction_id, timestamp, card_id, terminal_id, amount and optionally
is_fraud, fraud_scenario; other columns are ignored. ``timestamp`` is ISO 8601
text (UTC when no offset is given; offsets are converted to UTC), a Parquet
timestamp, or integer epoch milliseconds.

Reading returns the canonical frame (:mod:`pipeline.data.schema`) or raises one
:class:`DataValidationError` naming the column, the problem and how many rows
have it (rows are numbered from 1, header excluded).
"""

from __future__ import annotations

import gzip
import os
import uuid
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from pipeline.data.errors import DataFileError, DataValidationError
from pipeline.data.schema import ALL_COLUMNS, DTYPES, REQUIRED_COLUMNS

FileFormat = Literal["parquet", "csv"]
DatetimeArray = npt.NDArray[np.datetime64]
_ID_COLUMNS = ("transaction_id", "card_id", "terminal_id")
_SUFFIXES: dict[str, FileFormat] = {".parquet": "parquet", ".csv": "csv", ".csv.gz": "csv"}


def file_format(path: str | os.PathLike[str]) -> FileFormat:
    """The format implied by the file name; unknown extensions are an error."""
    name = Path(path).name.lower()
    for suffix, fmt in sorted(_SUFFIXES.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(suffix):
            return fmt
    raise DataFileError(
        f"{path}: unknown file type; expected one of {', '.join(sorted(_SUFFIXES))}"
    )


def read_transactions(path: str | os.PathLike[str], require_labels: bool = False) -> pd.DataFrame:
    """Read and validate a transactions file; returns the canonical frame.

    Label columns are returned only when the file has them; with
    ``require_labels`` a file without ``is_fraud`` is an error.
    """
    raw = _read_raw(Path(path))
    try:
        return validate_transactions(raw, require_labels=require_labels)
    except DataValidationError as exc:
        raise DataValidationError(f"{path}: {exc}") from None


def validate_transactions(frame: pd.DataFrame, require_labels: bool = False) -> pd.DataFrame:
    """Check a frame against the contract and return it in canonical form."""
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if require_labels and "is_fraud" not in frame.columns:
        missing.append("is_fraud")
    if missing:
        raise DataValidationError(
            f"missing column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
            f"(found: {', '.join(map(str, frame.columns)) or 'none'})"
        )
    out: dict[str, pd.Series | np.ndarray] = {}
    for column in _ID_COLUMNS:
        out[column] = _integers(frame[column], column)
    out["timestamp"] = _timestamps(frame["timestamp"])
    out["amount"] = _amounts(frame["amount"])
    if "is_fraud" in frame.columns:
        out["is_fraud"] = _flags(frame["is_fraud"])
    if "fraud_scenario" in frame.columns:
        codes = _integers(frame["fraud_scenario"], "fraud_scenario")
        _fail_rows("fraud_scenario", (codes < 0) | (codes > 127), "codes outside 0..127")
        out["fraud_scenario"] = codes.astype(np.int8)
    _check_unique_ids(out["transaction_id"])
    _check_sorted(np.asarray(out["timestamp"]).view(np.int64))
    columns = [c for c in ALL_COLUMNS if c in out]
    result = pd.DataFrame({c: np.asarray(out[c]) for c in columns})
    return result.astype({c: DTYPES[c] for c in columns})


def write_transactions(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write the contract columns of ``frame`` to Parquet or CSV(.gz), by extension.

    Written to a temporary file beside the target and renamed into place, so a
    failure never leaves a half-written file. CSV timestamps are ISO 8601 UTC
    (``2018-04-01T00:00:31Z``). Returns the path written.
    """
    target = Path(path)
    fmt = file_format(target)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataValidationError(f"cannot write: missing column(s) {', '.join(missing)}")
    data = frame[[c for c in ALL_COLUMNS if c in frame.columns]]
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "parquet":
            data.to_parquet(tmp, index=False)
        else:
            _write_csv(data, tmp, gzipped=target.name.lower().endswith(".gz"))
        os.replace(tmp, target)
    except (OSError, ValueError) as exc:
        detail = getattr(exc, "strerror", None) or " ".join(str(exc).split())[:200]
        raise DataFileError(f"{target}: cannot write: {detail}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return target


def timestamps_ms(frame: pd.DataFrame) -> npt.NDArray[np.int64]:
    """The ``timestamp`` column as int64 epoch milliseconds (UTC)."""
    values = frame["timestamp"].to_numpy(dtype="datetime64[ns]")
    return np.asarray(values.astype("datetime64[ms]").view(np.int64), dtype=np.int64)


def _read_raw(path: Path) -> pd.DataFrame:
    fmt = file_format(path)
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            names = pq.read_schema(path).names
            return pd.read_parquet(path, columns=[c for c in names if c in ALL_COLUMNS])
        return pd.read_csv(path, usecols=lambda c: c in ALL_COLUMNS, low_memory=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise DataFileError(f"{path}: cannot read as {fmt}: {detail}") from exc


def _integers(series: pd.Series, column: str) -> npt.NDArray[np.int64]:
    if pd.api.types.is_bool_dtype(series.dtype):
        raise DataValidationError(f"column {column!r}: expected integers, found booleans")
    if pd.api.types.is_integer_dtype(series.dtype) and not series.hasnans:
        return np.asarray(series.to_numpy(dtype=np.int64), dtype=np.int64)
    numbers = _numbers(series, column)
    _fail_rows(column, np.isnan(numbers), "missing values (NaN)")
    _fail_rows(column, ~np.isfinite(numbers) | (numbers != np.round(numbers)), "non-integer values")
    return numbers.astype(np.int64)


def _amounts(series: pd.Series) -> npt.NDArray[np.float64]:
    if pd.api.types.is_bool_dtype(series.dtype):
        raise DataValidationError("column 'amount': expected numbers, found booleans")
    numbers = _numbers(series, "amount")
    _fail_rows("amount", np.isnan(numbers), "missing values (NaN)")
    _fail_rows("amount", np.isinf(numbers), "infinite values")
    _fail_rows("amount", numbers < 0, "negative values")
    return numbers


def _flags(series: pd.Series) -> npt.NDArray[np.int8]:
    if pd.api.types.is_bool_dtype(series.dtype) and not series.hasnans:
        return np.asarray(series.to_numpy(dtype=np.int8), dtype=np.int8)
    numbers = _numbers(series, "is_fraud")
    _fail_rows("is_fraud", ~np.isin(numbers, (0.0, 1.0)), "values other than 0 or 1")
    return numbers.astype(np.int8)


def _numbers(series: pd.Series, column: str) -> npt.NDArray[np.float64]:
    """Numeric values as float64 (NaN where missing); non-numeric text is an error."""
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        return np.asarray(series.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    coerced = pd.to_numeric(series, errors="coerce")
    bad = (coerced.isna() & series.notna()).to_numpy()
    _fail_rows(column, bad, "non-numeric values", series)
    return np.asarray(coerced.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)


def _timestamps(series: pd.Series) -> DatetimeArray:
    dtype = series.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(series.dtype):
        _fail_rows("timestamp", series.isna().to_numpy(), "missing values")
        return _as_datetime(series.to_numpy(dtype="datetime64[ns]"))
    if pd.api.types.is_bool_dtype(dtype):
        raise DataValidationError(
            "column 'timestamp': expected ISO 8601 or epoch ms, found booleans"
        )
    if pd.api.types.is_numeric_dtype(dtype):
        millis = _numbers(series, "timestamp")
        _fail_rows("timestamp", np.isnan(millis), "missing values")
        _fail_rows("timestamp", millis != np.round(millis), "fractional epoch milliseconds")
        return millis.astype(np.int64).astype("datetime64[ms]").astype("datetime64[ns]")
    _fail_rows("timestamp", series.isna().to_numpy(), "missing values")
    text = series.astype(str)
    parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    _fail_rows(
        "timestamp", parsed.isna().to_numpy(), "unparseable timestamps (not ISO 8601)", series
    )
    return _as_datetime(parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]"))


def _check_unique_ids(ids: npt.NDArray[np.int64]) -> None:
    repeated = pd.Series(ids).duplicated(keep="first").to_numpy()
    _fail_rows("transaction_id", repeated, "duplicate ids", pd.Series(ids))


def _check_sorted(stamps: npt.NDArray[np.int64]) -> None:
    earlier = np.zeros(stamps.size, dtype=bool)
    earlier[1:] = stamps[1:] < stamps[:-1]
    _fail_rows(
        "timestamp",
        earlier,
        "timestamps out of order (earlier than the previous row)",
    )


def _fail_rows(
    column: str,
    bad: npt.NDArray[np.bool_],
    problem: str,
    values: pd.Series | None = None,
) -> None:
    """Raise one error naming the column, the count of ``bad`` rows and the first one."""
    count = int(np.count_nonzero(bad))
    if count == 0:
        return
    first = int(np.argmax(bad))
    example = f": {_shown(values.iloc[first])}" if values is not None else ""
    rows = "1 row" if count == 1 else f"{count} rows"
    raise DataValidationError(
        f"column {column!r}: {problem} in {rows} (first at row {first + 1}{example})"
    )


def _shown(value: object) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value) if isinstance(value, str) else str(value)


def _write_csv(frame: pd.DataFrame, path: Path, *, gzipped: bool) -> None:
    """CSV through Arrow's writer (an order of magnitude faster than pandas')."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    columns = {
        c: pa.array(_iso_utc(frame[c]) if c == "timestamp" else frame[c].to_numpy())
        for c in frame.columns
    }
    # the header is written here: Arrow would quote it (quoting_header needs a recent pyarrow)
    header = (",".join(map(str, frame.columns)) + "\n").encode()
    body = pa.BufferOutputStream()
    options = pa_csv.WriteOptions(include_header=False, quoting_style="none")
    pa_csv.write_csv(pa.table(columns), body, options)
    with open(path, "wb") as raw:
        if gzipped:
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) as out:
                out.write(header)
                out.write(memoryview(body.getvalue()))
        else:
            raw.write(header)
            raw.write(memoryview(body.getvalue()))


def _iso_utc(stamps: pd.Series) -> npt.NDArray[np.str_]:
    if isinstance(stamps.dtype, pd.DatetimeTZDtype):
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    values = stamps.to_numpy(dtype="datetime64[ns]")
    whole_seconds = not np.any(values.view(np.int64) % 1_000_000_000)
    text = np.datetime_as_string(values, unit="s" if whole_seconds else "ms", timezone="UTC")
    return np.asarray(text, dtype=np.str_)


def _as_datetime(values: object) -> DatetimeArray:
    return np.asarray(values, dtype="datetime64[ns]")
