"""The attack stage (what attacks.py runs): the undefended base CNN under the
whole suite, its table and its accuracy-vs-eps plot."""
import time

from fashion_defenses.attacks.suite import Plan, fgsm_k_name, measure, plain_target
from fashion_defenses.data import attack_subset, load_data
from fashion_defenses.models import get_base_model
from fashion_defenses.reporting import error_bars, pyplot, save_figure, write_table
from fashion_defenses.settings import DEFAULT_EPS, L2_RADII, QUICK_EPS


def run_attacks(ctx, n=None, eps_values=None):
    """The undefended base CNN under the whole suite, on n fixed test images."""
    protocol = ctx.protocol
    data = load_data(protocol, ctx.data_dir, ctx.quick)
    model, _ = get_base_model(ctx, data)
    n = n or (200 if ctx.quick else protocol.n_attack)
    idx = attack_subset(len(data.y_test), n)
    x, y = data.x_test[idx], data.y_test[idx]
    plan = Plan(tuple(eps_values or (QUICK_EPS if ctx.quick else DEFAULT_EPS[protocol.name])),
                L2_RADII["quick" if ctx.quick else protocol.name], fgsm_k_name(protocol))
    start = time.time()
    rows, _ = measure(plain_target(model), x, y, plan, ctx.seed)
    rows = [{"protocol": protocol.name, **r} for r in rows]
    stem = ctx.results_dir / f"attacks_{protocol.name}"
    write_table(rows, stem, title=f"Undefended {protocol.architecture} under the attack suite, "
                f"{protocol.name} protocol, {n} fixed test images, seed {ctx.seed} (exact 95% intervals)")
    plot_accuracy_vs_eps(rows, plot_title(protocol, n), ctx.results_dir / f"attacks_{protocol.name}.png")
    print(f"wrote {stem}.csv, {stem}.md, {stem}.png ({time.time() - start:.0f} s)")


def plot_title(protocol, n):
    return f"Undefended {protocol.architecture} ({protocol.name} protocol, n={n})"


def plot_accuracy_vs_eps(rows, title, path):
    """Accuracy against eps per attack: markers at the measured budgets with their
    intervals, dotted lines only as a guide; the worst case as a wide pale band beneath,
    so the attack that sets it stays visible on top of it. An attack run at one budget
    only is a square set a little apart from the others there."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    clean, singles = rows[0], 0
    for label in dict.fromkeys(r["attack"] for r in rows[1:]):
        sel = [r for r in rows if r["attack"] == label and r["norm"] == "linf"]
        if len(sel) == 1 and sel[0]["eps"] < 1:
            r, singles = sel[0], singles + 1
            ax.errorbar([r["eps"] + 0.004 * singles], [100 * r["acc"]], fmt="s", capsize=3, zorder=3,
                        label=f"{label} (at {r['eps']:g})", yerr=error_bars([r]))
        if len(sel) < 2:
            continue
        points = [clean] + sel
        style = (dict(fmt="o-", lw=7, ms=9, alpha=0.3, zorder=1) if label == "worst case" else
                 dict(fmt="o:", lw=1.2, ms=4, capsize=2, zorder=2))
        ax.errorbar([0.0] + [r["eps"] for r in sel], [100 * r["acc"] for r in points],
                    yerr=None if label == "worst case" else error_bars(points), label=label, **style)
    ax.set(xlabel="L-inf eps (pixels in [0, 1]); only the marked budgets are measured",
           ylabel="accuracy (%), exact 95% interval", title=title, ylim=(0, 100))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    save_figure(fig, path)
