"""Reading, validating and writing transaction files (the data-file contract)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.csv
import pytest

from pipeline.data.errors import DataFileError, DataValidationError
from pipeline.data.io import read_transactions, timestamps_ms, write_transactions
from pipeline.data.schema import DTYPES
from pipeline.errors import FraudError

T0_MS = 1_522_540_800_000  # 2018-04-01T00:00:00Z


def _frame(n: int = 6) -> pd.DataFrame:
    stamps = pd.Timestamp("2018-04-01") + pd.to_timedelta(np.arange(n) * 1500, unit="ms")
    frame = pd.DataFrame(
        {
            "transaction_id": np.arange(n),
            "timestamp": stamps,
            "card_id": np.arange(n) % 3,
            "terminal_id": np.arange(n) + 100,
            "amount": np.round(np.linspace(1, 250, n), 2),
            "is_fraud": [0, 1] * (n // 2),
            "fraud_scenario": [0, 2] * (n // 2),
        }
    )
    return frame.astype(DTYPES)


def _csv(tmp_path: Path, text: str, name: str = "tx.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["tx.parquet", "tx.csv", "tx.csv.gz"])
def test_round_trip(tmp_path: Path, name: str) -> None:
    frame = _frame()
    path = write_transactions(frame, tmp_path / name)
    pd.testing.assert_frame_equal(read_transactions(path), frame)
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_csv_gz_is_compressed_and_iso_utc(tmp_path: Path) -> None:
    path = write_transactions(_frame(), tmp_path / "tx.csv.gz")
    with gzip.open(path, "rt") as fh:
        header, first = fh.readline().strip(), fh.readline().strip()
    assert header == "transaction_id,timestamp,card_id,terminal_id,amount,is_fraud,fraud_scenario"
    assert first.split(",")[1] == "2018-04-01T00:00:00.000Z"


def test_write_replaces_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "tx.parquet"
    write_transactions(_frame(6), path)
    write_transactions(_frame(4), path)
    assert len(read_transactions(path)) == 4


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def half_write(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    def half_parquet(self: pd.DataFrame, path: Path, **kwargs: object) -> None:
        Path(path).write_bytes(b"PAR1 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pyarrow.csv, "write_csv", half_write)
    monkeypatch.setattr(pd.DataFrame, "to_parquet", half_parquet)
    for name in ("tx.csv", "tx.csv.gz", "tx.parquet"):
        with pytest.raises(DataFileError, match="No space left on device"):
            write_transactions(_frame(), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_epoch_milliseconds(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        f"transaction_id,timestamp,card_id,terminal_id,amount\n"
        f"7,{T0_MS},1,2,3.5\n8,{T0_MS + 1234},1,2,0\n",
    )
    frame = read_transactions(path)
    assert list(frame["timestamp"]) == [
        pd.Timestamp("2018-04-01T00:00:00"),
        pd.Timestamp("2018-04-01T00:00:01.234"),
    ]
    assert list(timestamps_ms(frame)) == [T0_MS, T0_MS + 1234]
    assert list(frame.columns) == [
        "transaction_id",
        "timestamp",
        "card_id",
        "terminal_id",
        "amount",
    ]
    assert {c: str(t) for c, t in frame.dtypes.items()} == {c: DTYPES[c] for c in frame.columns}


def test_iso_offsets_converted_to_utc_naive_assumed_utc(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "transaction_id,timestamp,card_id,terminal_id,amount,note\n"
        "1,2018-04-01T00:00:00,1,2,3.5,x\n"
        "2,2018-04-01T02:30:00+02:00,1,2,3.5,y\n"
        "3,2018-04-01 00:31:00Z,1,2,3.5,z\n",
    )
    frame = read_transactions(path)
    assert "note" not in frame.columns
    assert list(timestamps_ms(frame)) == [T0_MS, T0_MS + 1_800_000, T0_MS + 1_860_000]


def test_parquet_tz_aware_and_extra_columns(tmp_path: Path) -> None:
    frame = _frame().drop(columns=["fraud_scenario"])
    frame["timestamp"] = frame["timestamp"].dt.tz_localize("UTC").dt.tz_convert("Europe/Brussels")
    frame["merchant"] = "m"
    path = tmp_path / "tx.parquet"
    frame.to_parquet(path)
    got = read_transactions(path, require_labels=True)
    assert list(got.columns) == [*list(DTYPES)[:-1]]
    pd.testing.assert_series_equal(got["timestamp"], _frame()["timestamp"])


HEADER = "transaction_id,timestamp,card_id,terminal_id,amount,is_fraud\n"
GOOD = "1,2018-04-01T00:00:00,1,2,3.5,0\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "transaction_id,timestamp,card_id,amount\n1,2018-04-01,1,3.5\n",
            "missing column 'terminal_id'",
        ),
        (
            GOOD + "2,2018-04-01T00:00:01,1,2,abc,0\n3,2018-04-01T00:00:02,1,2,x,0\n",
            "column 'amount': non-numeric values in 2 rows (first at row 2: 'abc')",
        ),
        (
            GOOD + "2,2018-04-01T00:00:01,1,T9,3,0\n",
            "column 'terminal_id': non-numeric values in 1 row (first at row 2: 'T9')",
        ),
        (
            GOOD + "2,2018-04-01T00:00:01,1.5,2,3,0\n",
            "column 'card_id': non-integer values in 1 row (first at row 2)",
        ),
        (
            GOOD + "2,yesterday,1,2,3,0\n3,2018-04-01T00:00:01,1,2,3,0\n",
            "column 'timestamp': unparseable timestamps (not ISO 8601) in 1 row (first at row 2: 'yesterday')",
        ),
        (
            GOOD + "2,2018-04-01T00:00:01,1,2,,0\n3,2018-04-01T00:00:02,1,2,,0\n",
            "column 'amount': missing values (NaN) in 2 rows (first at row 2)",
        ),
        (
            GOOD + "2,2018-04-01T00:00:01,1,2,-3,0\n",
            "column 'amount': negative values in 1 row (first at row 2)",
        ),
        (
            GOOD + "2,2018-04-01T00:00:01,,2,3,0\n",
            "column 'card_id': missing values (NaN) in 1 row (first at row 2)",
        ),
        (
            GOOD + "2,2018-04-01T00:00:01,1,2,3,0\n1,2018-04-01T00:00:02,1,2,3,0\n"
            "2,2018-04-01T00:00:03,1,2,3,0\n",
            "column 'transaction_id': duplicate ids in 2 rows (first at row 3: 1)",
        ),
        (
            GOOD + "2,2018-04-01T00:00:05,1,2,3,0\n3,2018-04-01T00:00:01,1,2,3,0\n",
            "column 'timestamp': timestamps out of order (earlier than the previous row) in 1 row (first at row 3)",
        ),
        (
            GOOD + "2,2018-04-01T00:00:01,1,2,3,2\n3,2018-04-01T00:00:02,1,2,3,\n",
            "column 'is_fraud': values other than 0 or 1 in 2 rows (first at row 2)",
        ),
        (GOOD + "2,,1,2,3,0\n", "column 'timestamp': missing values in 1 row (first at row 2)"),
    ],
)
def test_each_validation_error(tmp_path: Path, body: str, message: str) -> None:
    text = body if body.startswith("transaction_id") else HEADER + body
    path = _csv(tmp_path, text)
    with pytest.raises(DataValidationError) as info:
        read_transactions(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert isinstance(info.value, FraudError)


def test_labels_required(tmp_path: Path) -> None:
    path = _csv(tmp_path, "transaction_id,timestamp,card_id,terminal_id,amount\n1,0,1,2,3\n")
    assert len(read_transactions(path)) == 1
    with pytest.raises(DataValidationError, match="missing column 'is_fraud'"):
        read_transactions(path, require_labels=True)


def test_epoch_with_fraction_rejected(tmp_path: Path) -> None:
    path = _csv(tmp_path, "transaction_id,timestamp,card_id,terminal_id,amount\n1,10.5,1,2,3\n")
    with pytest.raises(DataValidationError, match="fractional epoch milliseconds"):
        read_transactions(path)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="no such file"):
        read_transactions(tmp_path / "absent.parquet")
    with pytest.raises(DataFileError, match="unknown file type"):
        read_transactions(_csv(tmp_path, "x", "tx.json"))
    garbage = tmp_path / "bad.parquet"
    garbage.write_bytes(b"not parquet at all")
    with pytest.raises(DataFileError, match="cannot read as parquet"):
        read_transactions(garbage)
    with pytest.raises(DataFileError, match="cannot read as csv"):
        read_transactions(_csv(tmp_path, "", "empty.csv"))
    with pytest.raises(DataFileError, match="unknown file type"):
        write_transactions(_frame(), tmp_path / "tx.xlsx")


def test_empty_file_with_header_is_valid(tmp_path: Path) -> None:
    frame = read_transactions(_csv(tmp_path, HEADER))
    assert len(frame) == 0
    assert str(frame["timestamp"].dtype) == "datetime64[ns]"
