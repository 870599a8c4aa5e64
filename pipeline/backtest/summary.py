"""The JSON summary of a backtest: the window, the settings, and the models side by side."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.backtest.run import BacktestResult, ModelResult

SUMMARY_SCHEMA = 1


def summary(result: BacktestResult) -> dict[str, Any]:
    """A JSON-ready dict; ``models`` maps each reference as given to its measures."""
    window, config = result.window, result.config
    return {
        "schema": SUMMARY_SCHEMA,
        "data": {
            "file": window.source,
            "covers": [window.data_start.isoformat(), window.data_end.isoformat()],
            "start": window.start.isoformat(),
            "end": window.end.isoformat(),
            "days": len(window.days),
            "transactions": window.transactions,
            "scored": window.scored,
            "excluded_known_compromised": window.excluded,
            "frauds": window.frauds,
        },
        "settings": {
            "capacity": config.capacity,
            "review_threshold": config.policy.review_threshold,
            "decline_threshold": config.policy.decline_threshold,
            "label_delay_days": config.label_delay_days,
            "card_precision_k": config.k,
            "shap_sample": config.shap_sample,
            "shap_seed": config.seed,
        },
        "models": {
            model.requested: model_summary(model, config.capacity) for model in result.models
        },
        "daily": {
            "dates": [day.isoformat() for day in window.days],
            "transactions": window.daily_transactions.tolist(),
            "frauds": window.daily_frauds.tolist(),
        },
    }


def model_summary(model: ModelResult, capacity: int) -> dict[str, Any]:
    """One model's headline numbers, version, parameters and daily series."""
    version = model.version
    alerts = model.daily_alerts
    return {
        "model": {
            "ref": version.ref,
            "version": version.label,
            "created_at": version.created_at,
            "feature_set_version": version.feature_set_version,
            "training_range": list(version.data_range),
            "params": dict(version.params),
        },
        **model.metrics,
        "alerts_per_day": {"mean": float(np.mean(alerts)), "max": int(np.max(alerts))},
        "declines_per_day": {
            "mean": float(np.mean(model.daily_declines)),
            "max": int(np.max(model.daily_declines)),
        },
        "days_over_capacity_share": float(np.mean(alerts > capacity)),
        "alert_threshold": model.alerts.threshold,
        "precision_at_alert_threshold": model.alerts.precision,
        "recall_at_alert_threshold": model.alerts.recall,
        "alerts": model.alerts.alerts,
        "true_alerts": model.alerts.true_alerts,
        "mean_abs_shap": dict(model.mean_abs_shap),
        "shap_rows": model.shap_rows,
        "daily": {
            "card_precision": model.daily_card_precision.tolist(),
            "alerts": alerts.tolist(),
            "declines": model.daily_declines.tolist(),
        },
    }
