"""The evaluation's figures: accuracy against robustness, accuracy against eps and
leakage against robustness, one marker per defense."""
import numpy as np

from fashion_defenses.attacks.suite import HEADLINE_EPS
from fashion_defenses.evaluation.rows import find, fixed_images
from fashion_defenses.privacy import report as mr
from fashion_defenses.reporting import eps_text, error_bars, pyplot, save_figure

KIND_MARKERS = {"undefended": "o", "filter": "s", "adversarial training": "^",
                "filter + adversarial training": "P", "randomized smoothing": "D", "your model": "*"}


def defense_styles(evaluated):
    """One colour per defense (no two alike up to 20) and one marker per kind."""
    colors = pyplot().cm.tab20(np.linspace(0, 1, 20)) if len(evaluated) > 10 else [f"C{i}" for i in range(10)]
    return [dict(color=colors[i % len(colors)], marker=KIND_MARKERS.get(defense.kind, "o"), label=defense.label)
            for i, (defense, _) in enumerate(evaluated)]


def ringed(styles, points, closeness=0.015):
    """The styles with markers that share a point (closer than `closeness` of the data's
    span on both axes) drawn as growing hollow rings, so that no defense hides another."""
    points = np.asarray(points, dtype=float)
    span = np.ptp(points, axis=0) if len(points) else np.ones(2)
    span[span == 0] = 1.0
    out = []
    for i, style in enumerate(styles):
        near = np.all(np.abs(points[:i] - points[i]) < closeness * span, axis=1).sum() if i else 0
        out.append({**style, "ms": 6 + 5 * near, **({"mfc": "none", "mew": 1.5} if near else {})})
    return out


def legend_outside(ax):
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)


def plot_pareto(evaluated, title, path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 5))
    measured = [(find(rows, "clean"), find(rows, "worst case", HEADLINE_EPS)) for _, rows in evaluated]
    points = [(100 * robust["acc"], 100 * clean["acc"]) for clean, robust in measured]
    styles = ringed(defense_styles(evaluated), points)
    for style, (clean, robust) in zip(styles, measured):
        ax.errorbar(100 * robust["acc"], 100 * clean["acc"], ls="none", capsize=2,
                    xerr=error_bars([robust]), yerr=error_bars([clean]), **style)
    ax.set(xlabel=f"robust accuracy at L-inf eps {HEADLINE_EPS:g}, worst case over every attack (%)",
           ylabel="clean test accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    legend_outside(ax)
    save_figure(fig, path)


def plot_eps(evaluated, eps_grid, title, path):
    """The worst case of the suite at each measured budget: markers with intervals,
    joined by thin dotted lines only as a guide (nothing is measured between them)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 5))
    eps = [0.0] + list(eps_grid)
    for style, (defense, rows) in zip(defense_styles(evaluated), evaluated):
        fixed = fixed_images(rows)
        points = [(0.0, find(rows, "benign", images=fixed))] + [(e, find(rows, "worst case", e, fixed))
                                                                 for e in eps_grid]
        curve = [r for _, r in points if r is not None]
        ax.errorbar([e for e, r in points if r is not None], [100 * r["acc"] for r in curve], ms=4, capsize=2,
                    ls=":", lw=0.8, yerr=error_bars(curve), **style)
    ax.set_xticks(eps, [eps_text(e) for e in eps])
    ax.set(xlabel="L-inf eps (pixels in [0, 1]); only the marked budgets are measured",
           ylabel=f"worst case of the suite (%), AutoAttack from eps {HEADLINE_EPS:g}", ylim=(0, 100),
           title=title)
    ax.grid(alpha=0.3)
    legend_outside(ax)
    save_figure(fig, path)


def plot_privacy(evaluated, mia_rows, title, path):
    """Leakage against robustness: RMIA's ROC AUC and its TPR at 1% FPR, each with its
    95% interval (the differences between defenses are often smaller than those)."""
    plt = pyplot()
    fig, (ax_auc, ax_tpr) = plt.subplots(1, 2, figsize=(12, 4.5))
    shown = [(style, 100 * find(rows, "worst case", HEADLINE_EPS)["acc"],
              mia_rows.get((defense.key, mr.headline_attack(mia_rows.values()))))
             for style, (defense, rows) in zip(defense_styles(evaluated), evaluated)]
    shown = [(style, robust, r) for style, robust, r in shown if r and r["auc"] != ""]
    plotted = bool(shown)
    for ax, key, scale in ((ax_auc, "auc", 1), (ax_tpr, "tpr_at_1%_fpr", 100)):
        values = [[scale * float(r[k]) for k in (key, f"{key}_ci_low", f"{key}_ci_high")] for _, _, r in shown]
        styles = ringed([style for style, _, _ in shown], [(robust, v[0]) for (_, robust, _), v in zip(shown, values)])
        for style, (_, robust, _), (value, low, high) in zip(styles, shown, values):
            ax.errorbar(robust, value, yerr=[[value - low], [high - value]], ls="none", capsize=2, **style)
    ax_auc.axhline(0.5, color="k", ls=":", lw=1)
    ax_auc.set(xlabel=f"robust accuracy at eps {HEADLINE_EPS:g}, worst case (%)",
               ylabel="RMIA ROC AUC, 95% interval", title="leakage on average (dotted: chance)")
    ax_tpr.axhline(1, color="k", ls=":", lw=1)
    ax_tpr.set(xlabel=f"robust accuracy at eps {HEADLINE_EPS:g}, worst case (%)",
               ylabel="RMIA TPR at 1% FPR (%), exact 95% interval", title="leakage at low FPR (dotted: chance)")
    for ax in (ax_auc, ax_tpr):
        ax.grid(alpha=0.3)
        if not plotted:
            ax.text(0.5, 0.5, "no membership_inference.py results yet", ha="center", transform=ax.transAxes)
    if plotted:
        legend_outside(ax_tpr)
    fig.suptitle(title)
    save_figure(fig, path)


def draw_figures(evaluated, eps_grid, mia_rows, protocol_name, out):
    """The evaluation's three figures, <out>_pareto/_eps/_privacy.png."""
    plot_pareto(evaluated, f"Clean vs robust accuracy, {protocol_name} protocol", f"{out}_pareto.png")
    plot_eps(evaluated, eps_grid, f"Robust accuracy vs eps, {protocol_name} protocol", f"{out}_eps.png")
    plot_privacy(evaluated, mia_rows, f"Privacy vs robustness, {protocol_name} protocol", f"{out}_privacy.png")
