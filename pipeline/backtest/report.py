"""The backtest report: ``index.html`` (jinja2, figures inlined) and ``summary.json``.

The report directory appears whole or not at all: both files are written to a
temporary directory beside it, which is then renamed into place. An existing
directory is replaced only when it is empty or holds nothing but an earlier
report.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from pipeline.backtest.errors import BacktestError
from pipeline.backtest.plots import all_plots, color
from pipeline.backtest.run import BacktestResult, ModelResult
from pipeline.backtest.summary import summary
from pipeline.features import describe

HTML_FILE = "index.html"
SUMMARY_FILE = "summary.json"
REPORT_FILES = frozenset({HTML_FILE, SUMMARY_FILE})

#: Figure sections in report order: key, title, caption.
SECTIONS: tuple[tuple[str, str, str], ...] = (
    (
        "precision_recall",
        "Precision-recall curves",
        "Transaction-level precision against recall as the alert threshold moves; "
        "the dotted line is the fraud rate (a random ranking).",
    ),
    (
        "roc",
        "ROC curves",
        "True positive rate against false positive rate as the threshold moves.",
    ),
    (
        "card_precision",
        "Daily card precision@{k}",
        "Share of compromised cards among each day's {k} highest-scored cards; dashed: the mean.",
    ),
    (
        "alerts",
        "Alerts per day against analyst capacity",
        "Transactions at or above the review threshold (review and decline) per day; "
        "the dashed line is the capacity of {capacity} alerts a day.",
    ),
    (
        "scores",
        "Score distributions",
        "Scores of genuine (grey) and fraud (red) transactions, log scale; "
        "dashed: review threshold, dotted: decline threshold.",
    ),
    (
        "shap",
        "Mean |SHAP| per feature",
        "Mean absolute TreeSHAP contribution (log-odds) of each feature over {shap_rows} "
        "sampled scored transactions (the same rows for every model), from XGBoost's "
        "pred_contribs.",
    ),
)


@dataclass(frozen=True)
class MetricRow:
    """One row of the side-by-side table."""

    label: str
    values: list[str]
    best: int | None  # index of the best model, when "best" means something


def check_target(directory: Path) -> None:
    """Fail early when ``directory`` cannot receive a report."""
    if directory.exists() and not directory.is_dir():
        raise BacktestError(f"report target {directory} exists and is not a directory")
    if directory.is_dir():
        foreign = sorted(
            entry.name for entry in directory.iterdir() if entry.name not in REPORT_FILES
        )
        if foreign:
            raise BacktestError(
                f"report directory {directory} holds other files ({', '.join(foreign[:3])}); "
                "choose a new or empty directory"
            )
    parent = directory.parent
    existing = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise BacktestError(f"cannot create the report directory {directory}")


def render_html(result: BacktestResult, plots: dict[str, bytes]) -> str:
    """The report page; figures inlined as base64 PNG so the file stands alone."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("pipeline.backtest", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    template = environment.get_template("report.html.j2")
    config = result.config
    shap_rows = max((model.shap_rows for model in result.models), default=0)
    sections = [
        {
            "key": key,
            "title": title.format(k=config.k),
            "caption": caption.format(k=config.k, capacity=config.capacity, shap_rows=shap_rows),
            "image": base64.b64encode(plots[key]).decode("ascii"),
        }
        for key, title, caption in SECTIONS
        if key in plots
    ]
    return template.render(
        window=result.window,
        config=config,
        models=[_model_view(i, model) for i, model in enumerate(result.models)],
        rows=metric_rows(result),
        sections=sections,
        top_features=_top_features(result),
        shap_rows=shap_rows,
    )


def metric_rows(result: BacktestResult) -> list[MetricRow]:
    """The headline numbers, one row per measure, one column per model."""
    models = result.models
    k, capacity = result.config.k, result.config.capacity
    spec: list[tuple[str, list[float | None], str, int]] = [
        ("AUC ROC", [m.metrics["auc_roc"] for m in models], "{:.4f}", 1),
        ("Average precision", [m.metrics["average_precision"] for m in models], "{:.4f}", 1),
        (
            f"Card precision@{k} (mean over days)",
            [m.metrics[f"card_precision_at_{k}"] for m in models],
            "{:.4f}",
            1,
        ),
        ("Alerts per day, mean", [float(m.daily_alerts.mean()) for m in models], "{:.1f}", 0),
        ("Alerts per day, max", [float(m.daily_alerts.max()) for m in models], "{:.0f}", 0),
        (
            f"Days over capacity ({capacity}/day)",
            [float((m.daily_alerts > capacity).mean()) for m in models],
            "{:.1%}",
            -1,
        ),
        ("Precision at alert threshold", [m.alerts.precision for m in models], "{:.4f}", 1),
        ("Recall at alert threshold", [m.alerts.recall for m in models], "{:.4f}", 1),
        ("Declines per day, mean", [float(m.daily_declines.mean()) for m in models], "{:.1f}", 0),
    ]
    rows = []
    for label, values, fmt, direction in spec:
        shown = ["–" if v is None else fmt.format(v) for v in values]
        rows.append(MetricRow(label, shown, _best(values, direction)))
    return rows


def write_report(result: BacktestResult, directory: Path) -> Path:
    """Render everything, then write ``index.html`` and ``summary.json`` atomically."""
    check_target(directory)
    html = render_html(result, all_plots(result))
    text = json.dumps(summary(result), indent=2, allow_nan=False) + "\n"
    directory.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        (temp / SUMMARY_FILE).write_text(text, encoding="utf-8")
        (temp / HTML_FILE).write_text(html, encoding="utf-8")
        _replace(temp, directory)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return directory / HTML_FILE


def _replace(temp: Path, directory: Path) -> None:
    """Rename ``temp`` to ``directory``, moving an earlier report out of the way first."""
    old: Path | None = None
    if directory.is_dir():
        if any(directory.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
            os.rename(directory, old / "report")
        else:
            directory.rmdir()
    try:
        os.rename(temp, directory)
    except OSError as exc:
        if old is not None:
            os.rename(old / "report", directory)
        raise BacktestError(f"cannot write the report to {directory}: {exc}") from exc
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _best(values: list[float | None], direction: int) -> int | None:
    """Index of the best value (direction 1: highest, -1: lowest, 0: none)."""
    known = [(v, i) for i, v in enumerate(values) if v is not None]
    if direction == 0 or len(values) < 2 or len(known) < 2:
        return None
    chosen = max(known) if direction > 0 else min(known)
    if sum(1 for v, _ in known if v == chosen[0]) > 1:
        return None
    return chosen[1]


def _model_view(index: int, model: ModelResult) -> dict[str, Any]:
    version = model.version
    params = dict(version.params)
    key_params = ", ".join(
        f"{name} {params[name]}"
        for name in ("n_estimators", "max_depth", "learning_rate", "tree_method")
        if name in params
    )
    return {
        "name": model.name,
        "color": color(index),
        "ref": version.ref,
        "created_at": version.created_at[:16].replace("T", " "),
        "training_range": " .. ".join(version.data_range),
        "feature_set_version": version.feature_set_version or "–",
        "key_params": key_params or "–",
        "params_json": json.dumps(params, indent=1, sort_keys=True),
    }


def _top_features(result: BacktestResult, count: int = 5) -> list[dict[str, Any]]:
    """Each model's strongest features by mean |SHAP|, with their meaning."""
    views = []
    for model in result.models:
        ranked = sorted(model.mean_abs_shap.items(), key=lambda item: -item[1])[:count]
        views.append(
            {
                "name": model.name,
                "features": [
                    {"name": name, "value": value, "text": describe(name)} for name, value in ranked
                ],
            }
        )
    return [view for view in views if view["features"]]
