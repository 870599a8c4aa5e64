"""The handbook's metrics against hand-computed cases."""

from __future__ import annotations

import pytest

from pipeline.model import ModelError, auc_roc, average_precision, card_precision_at_k


def test_card_precision_at_k_hand_computed() -> None:
    # day 0: A .9 fraud, B .8 genuine, C .7 fraud  -> top2 {A, B}: 1/2, A detected
    # day 1: A .95 fraud (already detected: dropped), C .6 genuine + .1 fraud (card compromised),
    #        B .5 genuine, D .4 fraud -> top2 {C, B}: 1/2
    day = [0, 0, 0, 1, 1, 1, 1, 1]
    card = [1, 2, 3, 1, 3, 3, 2, 4]
    fraud = [1, 0, 1, 1, 0, 1, 0, 1]
    score = [0.9, 0.8, 0.7, 0.95, 0.6, 0.1, 0.5, 0.4]
    assert card_precision_at_k(day, card, fraud, score, k=2) == pytest.approx(0.5)
    # k=3 -> day 0: {A,B,C} 2/3, both detected; day 1: only B, D left -> 1/3
    assert card_precision_at_k(day, card, fraud, score, k=3) == pytest.approx((2 / 3 + 1 / 3) / 2)


def test_card_precision_uses_the_card_max_score_and_fixed_denominator() -> None:
    # card 1 has a genuine .9 and a fraud .1: the card ranks by .9 and counts as compromised
    assert card_precision_at_k([0, 0, 0], [1, 1, 2], [0, 1, 0], [0.9, 0.1, 0.5], k=1) == 1.0
    assert card_precision_at_k([0], [1], [1], [0.3], k=100) == pytest.approx(0.01)


def test_auc_and_average_precision() -> None:
    y, s = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    assert auc_roc(y, s) == pytest.approx(0.75)
    assert average_precision(y, s) == pytest.approx((1 + 2 / 3) / 2)
    with pytest.raises(ModelError):
        auc_roc([0, 0], [0.1, 0.2])
    with pytest.raises(ModelError):
        card_precision_at_k([0], [1], [1], [0.3], k=0)
