"""Protocol dates and the removal of known-compromised cards."""

from __future__ import annotations

from datetime import date

import numpy as np

from pipeline.model import fold_masks, prequential_folds, single_split
from pipeline.model.protocols import Fold


def test_handbook_dates_from_the_data_start() -> None:
    fold = single_split(date(2018, 4, 1))
    assert fold.describe() == {"train": "2018-07-25..2018-07-31", "test": "2018-08-08..2018-08-14"}
    folds = prequential_folds(date(2018, 4, 1))
    assert [f.test_start for f in folds] == [date(2018, 8, d) for d in (8, 15, 22, 29)]
    assert all((f.test_start - f.train_start).days == 14 for f in folds)
    assert prequential_folds(date(2020, 1, 1))[0].test_start == date(2020, 5, 9)


def test_known_compromised_cards_leave_the_test_set() -> None:
    fold = Fold(date(2018, 1, 1), train_days=2, delay_days=1, test_days=3)  # test days 3, 4, 5
    d0 = int(np.datetime64("2018-01-01", "D").astype(np.int64))
    days = d0 + np.array([0, 1, 2, 3, 3, 4, 4, 5, 5])
    card = np.array([1, 2, 3, 1, 2, 3, 4, 3, 4])
    fraud = np.array([1, 0, 1, 0, 0, 0, 1, 0, 0])
    train, test = fold_masks(days, card, fraud, fold)
    assert train.tolist() == [True, True] + [False] * 7
    # day 3: card 1 known (fraud day 0 <= 3-1-1); card 3's fraud on day 2 not yet known
    # day 4: card 3 known (day 2 <= 4-2); day 5: card 4's fraud on day 4 not known (4 > 5-2)
    assert test.tolist() == [False, False, False, False, True, False, True, False, True]
