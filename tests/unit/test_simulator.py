"""The transaction simulator: shape, determinism, the three fraud scenarios, drift, the CLI."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.data import fraud
from pipeline.data.drift import parse_drift_spec
from pipeline.data.io import read_transactions
from pipeline.data.schema import DTYPES, FraudScenario
from pipeline.data.simulator import SimulatorConfig, simulate

SMALL = SimulatorConfig(n_customers=500, n_terminals=1000, n_days=30, seed=3)
DRIFT_DAY = 20
DRIFT_BASE = SimulatorConfig(n_customers=500, n_terminals=1000, n_days=40, seed=11)
DAY_NS = 86_400 * 10**9


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    return simulate(SMALL)


@pytest.fixture(scope="module")
def drift_base() -> pd.DataFrame:
    return simulate(DRIFT_BASE)


def _with_drift(spec: str) -> pd.DataFrame:
    config = replace(DRIFT_BASE, drift=parse_drift_spec(spec))
    return simulate(config)


def _day(frame: pd.DataFrame, config: SimulatorConfig) -> np.ndarray:
    origin = np.datetime64(config.start_date, "ns")
    return ((frame["timestamp"].to_numpy() - origin) // np.timedelta64(1, "D")).astype(np.int64)


def test_canonical_frame(small: pd.DataFrame) -> None:
    assert list(small.columns) == list(DTYPES)
    assert {c: str(t) for c, t in small.dtypes.items()} == DTYPES
    assert np.array_equal(small["transaction_id"], np.arange(len(small)))
    assert small["timestamp"].is_monotonic_increasing
    assert small["timestamp"].min() >= pd.Timestamp("2018-04-01")
    assert small["timestamp"].max() < pd.Timestamp("2018-05-01")
    assert small["card_id"].between(0, SMALL.n_customers - 1).all()
    assert small["terminal_id"].between(0, SMALL.n_terminals - 1).all()
    assert (small["amount"] >= 0).all()
    assert np.allclose(small["amount"], small["amount"].round(2), atol=1e-9, rtol=0)
    assert ((small["fraud_scenario"] != 0) == (small["is_fraud"] == 1)).all()
    assert set(small["fraud_scenario"].unique()) == {0, 1, 2, 3}


def test_same_seed_same_data_other_seed_other_data(small: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(simulate(SMALL), small)
    other = simulate(replace(SMALL, seed=4))
    assert len(other) != len(small) or not other["amount"].equals(small["amount"])


def test_scaled_down_totals_match_the_handbook_model(small: pd.DataFrame) -> None:
    # 500 cards x 2 tx/day x 30 days x P(time of day kept) = 0.969
    assert abs(len(small) / 29_070 - 1) < 0.10
    counts = small["fraud_scenario"].value_counts()
    # 924 terminal-days compromised x ~0.97 tx per terminal-day
    assert 650 < counts[FraudScenario.COMPROMISED_TERMINAL] < 1150
    # 987 card-days compromised x ~1.94 tx/day / 3
    assert 450 < counts[FraudScenario.COMPROMISED_CARD] < 820
    assert 0 < counts[FraudScenario.LARGE_AMOUNT] < 0.005 * len(small)


def test_every_amount_above_220_is_fraud(small: pd.DataFrame) -> None:
    large = small[small["amount"] > 220]
    assert len(large) > 0
    assert (large["is_fraud"] == 1).all()
    assert (small.loc[small["fraud_scenario"] == 1, "amount"] > 220).all()


def test_compromised_terminals_are_fraud_for_28_days(small: pd.DataFrame) -> None:
    day = _day(small, SMALL)
    in_window = np.zeros(len(small), dtype=bool)
    for d in range(SMALL.n_days):
        rng = fraud.day_rng(SMALL.seed, fraud.STREAM_TERMINALS, d)
        chosen = rng.choice(SMALL.n_terminals, size=2, replace=False)
        in_window |= small["terminal_id"].isin(chosen).to_numpy() & (day >= d) & (day < d + 28)
    assert in_window.sum() > 500
    assert (small.loc[in_window, "is_fraud"] == 1).all()
    assert not (small["fraud_scenario"].to_numpy()[~in_window] == 2).any()


def test_compromised_cards_third_of_transactions_at_five_times_the_amount(
    small: pd.DataFrame,
) -> None:
    spec = parse_drift_spec("fraud_rate@day=0,terminals=2,customers=0")
    clean = simulate(replace(SMALL, drift=spec))
    assert len(clean) == len(small)
    scenario3 = (small["fraud_scenario"] == 3).to_numpy()
    expected = np.round(clean["amount"].to_numpy() * 5, 2)
    assert np.allclose(small["amount"].to_numpy()[scenario3], expected[scenario3], atol=1e-6)
    assert np.array_equal(small["amount"].to_numpy()[~scenario3], clean["amount"][~scenario3])

    day = _day(small, SMALL)
    windows = np.zeros(len(small), dtype=bool)
    for d in range(SMALL.n_days):
        rng = fraud.day_rng(SMALL.seed, fraud.STREAM_CUSTOMERS, d)
        cards = rng.choice(SMALL.n_customers, size=3, replace=False)
        windows |= small["card_id"].isin(cards).to_numpy() & (day >= d) & (day < d + 14)
    assert not (scenario3 & ~windows).any()
    assert 0.25 * windows.sum() <= scenario3.sum() <= windows.sum() / 3 + 1


def _before_unchanged(base: pd.DataFrame, drifted: pd.DataFrame) -> pd.Series:
    cut = pd.Timestamp(DRIFT_BASE.start_date) + pd.Timedelta(days=DRIFT_DAY)
    before = base["timestamp"] < cut
    assert before.sum() > 1000
    pd.testing.assert_frame_equal(drifted[: before.sum()], base[before])
    assert drifted["timestamp"].iloc[before.sum()] >= cut
    return before


def test_covariate_shift_scales_a_share_of_cards_after_the_drift_day(
    drift_base: pd.DataFrame,
) -> None:
    drifted = _with_drift(f"covariate@day={DRIFT_DAY},share=0.4,factor=2")
    before = _before_unchanged(drift_base, drifted)
    assert len(drifted) == len(drift_base)
    after = ~before
    ratio = drifted["amount"][after] / drift_base["amount"][after]
    per_card = ratio.groupby(drifted["card_id"][after]).median()
    assert np.allclose(per_card[per_card > 1.5], 2.0, atol=0.01)
    assert np.allclose(per_card[per_card <= 1.5], 1.0, atol=0.01)
    assert abs((per_card > 1.5).mean() - 0.4) < 0.08


def test_card_testing_adds_bursts_only_after_the_drift_day(drift_base: pd.DataFrame) -> None:
    spec = f"card_testing@day={DRIFT_DAY},cards_per_day=6,probes=4,probe_max=1.5"
    drifted = _with_drift(spec)
    _before_unchanged(drift_base, drifted)
    assert not (drift_base["fraud_scenario"] == FraudScenario.CARD_TESTING).any()
    testing = drifted[drifted["fraud_scenario"] == FraudScenario.CARD_TESTING]
    legit = drifted[drifted["fraud_scenario"] != FraudScenario.CARD_TESTING]
    cols = ["timestamp", "card_id", "terminal_id", "amount", "fraud_scenario"]
    pd.testing.assert_frame_equal(legit[cols].reset_index(drop=True), drift_base[cols])
    assert (testing["is_fraud"] == 1).all()

    bursts = testing.groupby([testing["card_id"], _day(testing, DRIFT_BASE)], sort=False)
    assert bursts.ngroups == 6 * (DRIFT_BASE.n_days - DRIFT_DAY)
    for _, burst in bursts:
        assert 3 <= len(burst) <= 5
        assert burst["terminal_id"].nunique() == 1
        gaps = burst["timestamp"].diff().dropna().dt.total_seconds()
        assert gaps.between(10, 120).all()
        probes, cashout = burst["amount"].iloc[:-1], burst["amount"].iloc[-1]
        assert probes.between(0.01, 1.5).all()
        assert 100 <= cashout <= 300


def test_fraud_rate_change_raises_fraud_after_the_drift_day(drift_base: pd.DataFrame) -> None:
    drifted = _with_drift(f"fraud_rate@day={DRIFT_DAY},factor=3")
    before = _before_unchanged(drift_base, drifted)
    assert len(drifted) == len(drift_base)
    assert np.array_equal(drifted["card_id"], drift_base["card_id"])
    after = ~before
    for code in (FraudScenario.COMPROMISED_TERMINAL, FraudScenario.COMPROMISED_CARD):
        base_n = (drift_base["fraud_scenario"][after] == code).sum()
        drift_n = (drifted["fraud_scenario"][after] == code).sum()
        assert drift_n > 1.5 * base_n


def test_customer_without_reachable_terminal_makes_no_transactions() -> None:
    frame = simulate(SimulatorConfig(n_customers=200, n_terminals=5, n_days=5, seed=1))
    # with 5 terminals on a 100x100 grid and radius 5 most customers reach none
    assert frame["card_id"].nunique() < 40


def test_cli_writes_file_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "tx.csv.gz"
    args = ["simulate", "--days", "5", "--seed", "2", "--customers", "100", "--terminals", "400"]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--out", str(out), "--drift", "card_testing@day=2,cards_per_day=3"])
    assert exit_info.value.code == 0
    frame = read_transactions(out, require_labels=True)
    line = capsys.readouterr().out.strip()
    assert f"{len(frame):,} transactions" in line
    assert "card_testing=" in line and "%" in line and line.endswith(" s")
    assert (frame["fraud_scenario"] == FraudScenario.CARD_TESTING).sum() >= 9


@pytest.mark.parametrize(
    ("extra", "code", "fragment"),
    [
        (["--drift", "covariate@day=x"], 2, "day must be an integer"),
        (["--drift", "covariate@day=9"], 1, "drift day 9 is not within the 5"),
        (["--days", "0"], 2, "--days"),
        (["--start-date", "2018-13-01"], 2, "--start-date"),
    ],
)
def test_cli_bad_arguments_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    code: int,
    fragment: str,
) -> None:
    out = tmp_path / "tx.parquet"
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "--days", "5", "--out", str(out), *extra])
    assert exit_info.value.code == code
    err = capsys.readouterr().err.strip()
    assert fragment in err and "\n" not in err
    assert not out.exists()


def test_cli_rejects_unknown_extension_before_simulating(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "--days", "5", "--out", str(tmp_path / "tx.json")])
    assert exit_info.value.code == 1
    assert "unknown file type" in capsys.readouterr().err
