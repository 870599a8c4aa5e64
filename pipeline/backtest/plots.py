"""The report's figures as PNG bytes, drawn with matplotlib's Agg canvas.

Figures are built on :class:`matplotlib.figure.Figure` with an explicit Agg
canvas, never through ``pyplot``: no global figure state, no GUI backend, safe
to call from any thread or test. Margins are fixed in inches rather than found
by a layout engine, which would draw every figure several times over.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import date

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from pipeline.backtest.run import BacktestResult

DPI = 110
#: One color per model, in the order the models were given.
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


def color(index: int) -> str:
    """The color of the ``index``-th model."""
    return PALETTE[index % len(PALETTE)]


def all_plots(result: BacktestResult) -> dict[str, bytes]:
    """Every figure of the report, by section key (``shap`` only when it was computed)."""
    makers: dict[str, Callable[[BacktestResult], bytes]] = {
        "precision_recall": precision_recall,
        "roc": roc,
        "card_precision": daily_card_precision,
        "alerts": alerts_per_day,
        "scores": score_distributions,
    }
    plots = {key: make(result) for key, make in makers.items()}
    if any(model.mean_abs_shap for model in result.models):
        plots["shap"] = mean_abs_shap(result)
    return plots


def precision_recall(result: BacktestResult) -> bytes:
    """Precision against recall, one line per model, AP in the legend."""
    fig, ax = _figure()
    for i, model in enumerate(result.models):
        c = model.curves
        ap = model.metrics["average_precision"]
        ax.plot(c.recall, c.precision, color=color(i), label=f"{model.name}  AP {ap:.3f}")
    base = result.window.frauds / result.window.scored
    ax.axhline(base, color="grey", linestyle=":", linewidth=1, label=f"fraud rate {base:.4f}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title("Precision-recall")
    ax.legend(loc="upper right")
    return _png(fig)


def roc(result: BacktestResult) -> bytes:
    """True against false positive rate, one line per model, AUC in the legend."""
    fig, ax = _figure()
    for i, model in enumerate(result.models):
        c = model.curves
        auc = model.metrics["auc_roc"]
        label = f"{model.name}  AUC {auc:.3f}"
        ax.plot(c.false_positive_rate, c.true_positive_rate, color=color(i), label=label)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title("ROC")
    ax.legend(loc="lower right")
    return _png(fig)


def daily_card_precision(result: BacktestResult) -> bytes:
    """Card precision@k per day, one line per model, its mean dashed."""
    fig, ax = _figure(wide=True)
    days = _dates(result.window.days)
    k = result.config.k
    for i, model in enumerate(result.models):
        values = model.daily_card_precision
        ax.plot(days, values, color=color(i), marker="o", markersize=3, label=model.name)
        ax.axhline(float(np.mean(values)), color=color(i), linestyle="--", linewidth=1)
    ax.set(ylabel=f"card precision@{k}", ylim=(0, None))
    ax.set_title(f"Daily card precision@{k} (dashed: mean)")
    ax.legend(loc="best")
    for label in ax.get_xticklabels():
        label.set(rotation=30, horizontalalignment="right")
    return _png(fig)


def alerts_per_day(result: BacktestResult) -> bytes:
    """Alerts (review + decline) per day per model, against the analysts' capacity."""
    fig, ax = _figure(wide=True)
    n = len(result.models)
    positions = np.arange(len(result.window.days))
    width = 0.8 / n
    for i, model in enumerate(result.models):
        offset = (i - (n - 1) / 2) * width
        ax.bar(positions + offset, model.daily_alerts, width, color=color(i), label=model.name)
    capacity = result.config.capacity
    ax.axhline(capacity, color="black", linestyle="--", linewidth=1.2, label=f"capacity {capacity}")
    _day_ticks(ax, result.window.days)
    ax.set(ylabel="alerts per day")
    ax.set_title(f"Alerts per day (score >= {result.config.policy.review_threshold:g})")
    ax.legend(loc="upper left")
    return _png(fig)


def score_distributions(result: BacktestResult) -> bytes:
    """Histograms of genuine and fraud scores, one panel per model, log counts."""
    n = len(result.models)
    fig = _canvas(min(4.2 * n, 13), 3.6, left=0.9, bottom=0.6)
    axes = fig.subplots(1, n, squeeze=False, sharey=True)[0]
    thresholds = (result.config.policy.review_threshold, result.config.policy.decline_threshold)
    for ax, model in zip(axes, result.models, strict=True):
        h = model.histogram
        ax.stairs(h.genuine, h.edges, color="#7f7f7f", fill=True, alpha=0.5, label="genuine")
        ax.stairs(h.fraud, h.edges, color="#d62728", linewidth=1.5, label="fraud")
        for threshold, style in zip(thresholds, ("--", ":"), strict=True):
            ax.axvline(threshold, color="black", linestyle=style, linewidth=1)
        ax.set_yscale("log")
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set(xlabel="score", xlim=(0, 1), title=model.name)
    axes[0].set_ylabel("transactions")
    axes[0].legend(loc="upper center")
    return _png(fig)


def mean_abs_shap(result: BacktestResult) -> bytes:
    """Mean |TreeSHAP contribution| per feature, models side by side, largest (on average) first."""
    models = [model for model in result.models if model.mean_abs_shap]
    names = {name: 0.0 for model in models for name in model.mean_abs_shap}
    for model in models:
        for name, value in model.mean_abs_shap.items():
            names[name] += value / len(models)
    features = sorted(names, key=lambda name: names[name])  # largest ends up on top
    n = len(models)
    height = 0.22 * len(features) * max(1.0, n / 1.5) + 1.2
    ax = _canvas(9, height, left=2.6, bottom=0.6).add_subplot()
    fig = ax.get_figure()
    assert isinstance(fig, Figure)
    positions = np.arange(len(features))
    bar = 0.8 / n
    for i, model in enumerate(models):
        values = [model.mean_abs_shap.get(name, 0.0) for name in features]
        offset = ((n - 1) / 2 - i) * bar
        ax.barh(positions + offset, values, bar, color=color(i), label=model.name)
    ax.set_yticks(positions, features, fontsize=8)
    ax.set(xlabel="mean |SHAP| (log-odds)", ylim=(-0.6, len(features) - 0.4))
    ax.set_title("Mean |SHAP| per feature")
    ax.legend(loc="lower right")
    return _png(fig)


def _figure(wide: bool = False) -> tuple[Figure, Axes]:
    fig = _canvas(10, 3.8, bottom=0.75) if wide else _canvas(5.6, 4.4)
    return fig, fig.add_subplot()


def _canvas(
    width: float,
    height: float,
    *,
    left: float = 0.75,
    right: float = 0.2,
    bottom: float = 0.55,
    top: float = 0.4,
) -> Figure:
    """A figure on an Agg canvas with margins given in inches."""
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        bottom=bottom / height,
        top=1 - top / height,
        wspace=0.12,
    )
    return fig


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _dates(days: tuple[date, ...]) -> list[np.datetime64]:
    return [np.datetime64(day, "D") for day in days]


def _day_ticks(ax: Axes, days: tuple[date, ...]) -> None:
    step = max(1, len(days) // 14)
    ticks = np.arange(0, len(days), step)
    ax.set_xticks(ticks, [days[i].strftime("%m-%d") for i in ticks], rotation=45, fontsize=8)
