"""The tables and plots of evaluation.py, made from its rows: the summary of every
defense, the study's Table 4 beside ours, results/summary.md, and the figures. It
reads what the other stages wrote (membership inference, certification) through
their own path functions."""
import csv
import dataclasses
from pathlib import Path

import numpy as np

import attacks
import certified_robustness as cr
import filters
import input_preprocessing as ip
import membership_report as mr
import runtime_adversarial_training as rat
from attacks import HEADLINE_EPS
from data import PROTOCOLS, STUDY_TABLE4
from model import base_model_name
from recipes import Recipe
from reporting import (accuracy_ci, atomic_write_text, csv_text, eps_text, error_bars, markdown_table, pct, pyplot,
                       rerender_markdown, save_figure, write_table)


# ------------------------------------------------------------------- the rows

def fixed_images(rows):
    """The 'images' tag of the fixed attack set in a defense's rows."""
    return next(r["images"] for r in rows if r["attack"] == "benign" and r["images"].endswith("fixed"))


def fgsm_k_label(rows):
    """The suite's FGSM-k these rows ran (the study's loss in the paper protocol)."""
    return next(r["attack"] for r in rows if r["attack"].startswith("FGSM-k") and "transfer" not in r["attack"])


def find(rows, attack, eps=None, images=None):
    """The row of an attack (at eps, on those images); None if absent."""
    for r in rows:
        if r["attack"] == attack and (eps is None or abs(r["eps"] - eps) < 1e-4) and \
                (images is None or r["images"] == images):
            return r
    return None


def autoattack_row(rows, images=None):
    """A defense's AutoAttack row at the headline eps: the standard version's, or the
    rand version's for a randomized defense."""
    return (find(rows, "AutoAttack", HEADLINE_EPS, images) or
            find(rows, attacks.AUTOATTACK_RAND_LABEL, HEADLINE_EPS, images))


# ---------------------------------------------------------- membership inference

def mia_results(results_dir, protocol_name):
    """membership_inference.py's rows for this protocol, by (model, attack); {} if it has not run."""
    path = Path(f"{mr.table_stem(results_dir, protocol_name)}.csv")
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {(r["model"], r["attack"]): r for r in csv.DictReader(f)}


def study_mia_accuracy(results_dir, model_name):
    """The study's MIA accuracy with its interval, from the saved decisions."""
    path = mr.scores_path(results_dir, model_name, "study")
    if not path.exists():
        return None
    saved = np.load(path)
    return accuracy_ci(saved["decision"] == saved["is_member"])


# ------------------------------------------------------------------------ tables

def certified_at(results_dir, defense, radius):
    """Certified accuracy at an L2 radius from certified_robustness.py's log (largest n),
    as '%' with its interval; 'n/a' beyond the largest radius that n samples can
    certify; '' for a defense that certifies nothing."""
    rows, cap = cr.certified_log_rows(results_dir, defense.name, defense.sigma) if defense.sigma else (None, None)
    if rows is None:
        return ""
    return "n/a" if radius > cap else pct(cr.certified_accuracy(rows, radius))


def summary_row(defense, rows, checks, mia_rows, settings, results_dir):
    fixed = fixed_images(rows)
    mia_cell = lambda attack, key: mia_rows.get((defense.key, attack), {}).get(key, "")  # noqa: E731
    fmt = lambda v: f"{float(v):.3f}" if v != "" else ""  # noqa: E731
    fgsm_k = fgsm_k_label(rows)
    row = {"defense": defense.label, "kind": defense.kind, "model": defense.key,
           "clean (test set)": pct(find(rows, "clean")),
           "FGSM-k transfer": pct(find(rows, f"{fgsm_k} transfer", images=fixed)),
           "FGSM-k adaptive": pct(find(rows, fgsm_k, images=fixed)),
           f"PGD-20 @{HEADLINE_EPS:g}": pct(find(rows, "PGD-20", HEADLINE_EPS, fixed)),
           f"AutoAttack @{HEADLINE_EPS:g}": pct(autoattack_row(rows, fixed)),
           f"{attacks.SOFT_APGD_LABEL} @{HEADLINE_EPS:g}": pct(find(rows, attacks.SOFT_APGD_LABEL, HEADLINE_EPS,
                                                                   fixed)),
           f"worst case @{HEADLINE_EPS:g}": pct(find(rows, "worst case", HEADLINE_EPS, fixed))}
    for radius in settings.l2_radii:
        row[f"L2 PGD @{radius:g}"] = pct(find(rows, "L2 PGD-20", radius, fixed))
        row[f"certified @{radius:g}"] = certified_at(results_dir, defense, radius)
    row.update({"MIA loss AUC": fmt(mia_cell("loss", "auc")), "RMIA AUC": fmt(mia_cell(mr.HEADLINE_ATTACK, "auc")),
                "RMIA TPR@1%FPR": fmt(mia_cell(mr.HEADLINE_ATTACK, "tpr_at_1%_fpr")),
                "study-rule MIA acc": fmt(mia_cell("study", "accuracy")),
                "n (attacks)": find(rows, "benign", images=fixed)["n"],
                "sanity": "ok" if all(p for _, p, _ in checks) else
                          "FLAGGED: " + "; ".join(c for c, p, _ in checks if not p)})
    return row


TABLE4_MEASURES = (  # (our measure, the study's column, which rows of ours)
    ("train accuracy", "train_acc", ("clean (train)", None)),
    ("test accuracy", "test_acc", ("clean", None)),
    ("FGSM-k benign, study's 20", "fgsmk_benign", ("benign", "study's 20")),
    ("FGSM-k adversarial (transfer), study's 20", "fgsmk_adv", ("{fgsm_k} transfer", "study's 20")),
    ("FGSM-k benign, {fixed}", None, ("benign", "fixed")),
    ("FGSM-k transfer, {fixed}", None, ("{fgsm_k} transfer", "fixed")),
    ("FGSM-k adaptive, {fixed}", None, ("{fgsm_k}", "fixed")),
    ("MIA accuracy (study's rule)", "mia_acc", None),
    ("MIA F1 (study's rule)", "mia_f1", None),
)


def paper_table(evaluated, mia_rows, results_dir, settings):
    """The study's Table 4 beside ours: one row per (configuration, measure), with the
    study's figure, ours with n and interval, and whether the study's figure lies in
    our 95% interval. evaluated: (defense, rows) pairs."""
    table = []
    for defense, rows in evaluated:
        if not defense.paper_row:
            continue
        study = STUDY_TABLE4[defense.paper_row]
        for measure, study_key, which in TABLE4_MEASURES:
            ours = None
            if which:
                attack, images = which
                images = fixed_images(rows) if images == "fixed" else images
                ours = find(rows, attack.format(fgsm_k=fgsm_k_label(rows)), images=images)
            elif study_key == "mia_acc":
                ours = study_mia_accuracy(results_dir, defense.key)
            study_value = study.get(study_key, "") if study_key else ""
            cell = {"configuration": defense.paper_row, "model": defense.key,
                    "measure": measure.format(fixed=fixed_images(rows)), "study": study_value}
            if study_key == "mia_f1":
                f1 = mia_rows.get((defense.key, "study"), {}).get("f1", "")
                cell.update(n="", ours=round(float(f1), 3) if f1 != "" else "", ci_low="", ci_high="",
                            study_within_ci="")
            elif ours:
                within = "" if study_value == "" else \
                    bool(100 * ours["ci_low"] <= study_value <= 100 * ours["ci_high"])
                cell.update(n=ours["n"], ours=round(100 * ours["acc"], 2), ci_low=round(100 * ours["ci_low"], 2),
                            ci_high=round(100 * ours["ci_high"], 2), study_within_ci=within)
            else:
                cell.update(n="", ours="", ci_low="", ci_high="", study_within_ci="")
            table.append(cell)
    return table


def write_summary(results_dir):
    """results/summary.md: the generated tables of every protocol evaluated so far."""
    parts = ["# Summary of the evaluation\n",
             "Generated by `python evaluation.py` from the files in this folder; nothing here is typed by hand. "
             "Accuracies in %, with exact 95% Clopper-Pearson intervals.\n"]
    for stem, heading in (("evaluation_standard_summary", "Standard protocol: every defense"),
                          ("evaluation_standard_checks", "Standard protocol: sanity checks"),
                          ("evaluation_paper_table4", "Paper protocol: the study's Table 4 beside ours"),
                          ("evaluation_paper_summary", "Paper protocol: every defense"),
                          ("evaluation_paper_checks", "Paper protocol: sanity checks")):
        path = Path(results_dir) / f"{stem}.md"
        if path.exists():
            parts += [f"## {heading}\n", markdown_table(path)]
    atomic_write_text(Path(results_dir) / "summary.md", "\n".join(parts))


def table4_note(table):
    """Which of the study's figures lie within our 95% intervals (a generated sentence
    under the table). table: paper_table's rows."""
    rows = [r for r in table if r["study_within_ci"] in (True, False)]
    inside = [r for r in rows if r["study_within_ci"]]
    outside = [f"{r['configuration']}: {r['measure']}" for r in rows if not r["study_within_ci"]]
    return (f"Of the {len(rows)} figures of the study we could set beside ours with an interval, {len(inside)} lie "
            f"within our 95% interval (a difference within noise) and {len(outside)} do not"
            + (": " + "; ".join(outside) if outside else "") + ".\n")


# ------------------------------------------------------------------------- plots

KIND_MARKERS = {"undefended": "o", "filter": "s", "adversarial training": "^",
                "filter + adversarial training": "P", "randomized smoothing": "D"}


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
    styles = ringed(defense_styles(evaluated), [(100 * robust["acc"], 100 * clean["acc"]) for clean, robust in measured])
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
        ax.errorbar([e for e, r in points if r is not None], [100 * r["acc"] for r in curve], ms=4, capsize=2, ls=":", lw=0.8,
                    yerr=error_bars(curve), **style)
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
    shown = [(style, 100 * find(rows, "worst case", HEADLINE_EPS)["acc"], mia_rows.get((defense.key, mr.HEADLINE_ATTACK)))
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


@dataclasses.dataclass(frozen=True)
class EvaluatedDefense:
    """What the figures need of a defense, as evaluation.py's CSV records it."""
    label: str
    kind: str
    key: str


def evaluated_from_csv(path):
    """(defense, rows) pairs of an evaluation CSV, in its order, with numbers as numbers."""
    groups = {}
    for r in numeric_rows(path):
        r["n"] = int(r["n"]) if r["n"] else None
        groups.setdefault(EvaluatedDefense(r["defense"], r["kind"], r["model"]), []).append(r)
    return list(groups.items())


def numeric_rows(path):
    """A results CSV's rows with the figures as numbers."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r.update({k: float(r[k]) if r[k] != "" else None for k in ("eps", "acc", "ci_low", "ci_high") if k in r})
    return rows


def redraw_figures(results_dir):
    """The figures drawn from a results CSV, again from that CSV (make readme): a figure
    fixed after a run is redrawn from that run's numbers, without re-running it. Only
    figures a run drew are redrawn."""
    results_dir = Path(results_dir)
    for protocol_name, protocol in PROTOCOLS.items():
        drawers = {
            (f"attacks_{protocol_name}", ".png"):
                lambda rows, png: attacks.plot_accuracy_vs_eps(rows, attacks.plot_title(protocol, int(rows[0]["n"])), png),
            (f"input_preprocessing_{protocol_name}", "_eps.png"):
                lambda rows, png: ip.plot_accuracy_vs_eps(rows, ip.PLOT_TITLE, png),
            (f"adversarial_training_{protocol_name}", "_clean_vs_robust.png"):
                lambda rows, png: rat.plot_clean_vs_robust(rows, *rat.CLEAN_VS_ROBUST, png),
            (f"adversarial_training_{protocol_name}_epochs", ".png"):
                lambda rows, png: rat.plot_epoch_logs(rows, rat.EPOCHS_TITLE.format(protocol_name), png)}
        for (stem, ending), draw in drawers.items():
            table, figure = results_dir / f"{stem}.csv", results_dir / f"{stem}{ending}"
            if table.exists() and figure.exists():
                draw(numeric_rows(table), figure)
        table = results_dir / f"evaluation_{protocol_name}.csv"
        if table.exists():
            evaluated = evaluated_from_csv(table)
            eps_grid = sorted({r["eps"] for _, rows in evaluated for r in rows if r["attack"] == "worst case"})
            draw_figures(evaluated, eps_grid, mia_results(results_dir, protocol_name), protocol_name,
                         table.with_suffix(""))
    redraw_certified(results_dir)


def certified_logs(results_dir):
    """{sigma: (certification log rows, the largest radius their n certifies)} of the
    smoothed standard CNNs certified in results_dir."""
    logs = {sigma: cr.certified_log_rows(results_dir, cr.noise_model_name(PROTOCOLS["standard"], sigma), sigma)
            for sigma in cr.SIGMAS}
    return {sigma: found for sigma, found in logs.items() if found[0] is not None}


def recheck_certificates(results_dir):
    """The empirical table's certified_acc and violation columns again from the
    certification logs, by today's certificate_check: a table a run judged by an older
    check reads as a new run's would. Every other column stays as the run wrote it."""
    table = Path(results_dir) / "certified_robustness_empirical.csv"
    if not table.exists():
        return
    text = table.read_text()
    rows = list(csv.DictReader(text.splitlines()))
    for sigma, (log, cap) in certified_logs(results_dir).items():
        for r in rows:
            if r["model"] == cr.smoothed_label(sigma):
                certified, violated = cr.certificate_check(
                    {"radius": float(r["radius"]), "ci_high": float(r["ci_high"])}, log, cap)
                r["certified_acc"], r["violation"] = str(certified), str(violated)
    if csv_text(rows) != text:
        atomic_write_text(table, csv_text(rows))


def redraw_certified(results_dir):
    """certified_accuracy.png again from the certification logs (the largest n per
    sigma, at the default alpha) and the empirical table."""
    figure, table = results_dir / "certified_accuracy.png", results_dir / "certified_robustness_empirical.csv"
    found = certified_logs(results_dir)
    if not (figure.exists() and table.exists() and found):
        return
    logs, caps = {sigma: rows for sigma, (rows, _) in found.items()}, {sigma: cap for sigma, (_, cap) in found.items()}
    empirical = numeric_rows(table)
    for r in empirical:
        r["radius"] = float(r["radius"])
    title = cr.curves_title(PROTOCOLS["standard"].name, len(next(iter(logs.values()))))
    cr.plot_curves(logs, empirical, caps, title, figure)


# ------------------------------------------------- the digest the README shows

def read_rows(path):
    """A results CSV as dicts; [] if it has not been written."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def leakage_findings(results_dir):
    """Sentences on membership leakage from the standard protocol's RMIA rows and its
    verdicts against the undefended CNN over every target (Song et al.'s question: does
    a defense leak more?)."""
    rows = [r for (_, attack), r in mia_results(results_dir, "standard").items()
            if attack == mr.HEADLINE_ATTACK and r["auc"] != ""]
    if not rows:
        return []
    low, high = min(float(r["auc"]) for r in rows), max(float(r["auc"]) for r in rows)
    most = max(rows, key=lambda r: float(r["tpr_at_1%_fpr"]))
    targets = max(int(r["targets"]) for r in rows)
    out = [f"RMIA, each target calibrated on the other models of its recipe ({targets} per recipe, each trained on "
           f"as many images as the defense's own), finds AUCs between {low:.3f} and {high:.3f} on the defenses' "
           f"own models; at 1% FPR it finds at most {most['tp_at_1%_fpr']} of {int(most['n_members']):,} members "
           f"({most['defense']})."]
    rule = ("a defense leaks less (more) than the undefended CNN only where the paired 95% interval of the "
            "difference in AUC lies below (above) 0 on every one of its targets")
    clean = read_rows(f"{mr.table_stem(results_dir, 'standard')}_verdict.csv")
    if clean:
        out.append(f"Counted as {rule}: {mr.verdict_sentence(clean)}.")
    adversarial = read_rows(f"{mr.table_stem(results_dir, 'standard', adversarial_queries=True)}_verdict.csv")
    if adversarial:
        queries = adversarial[0]["queries"].split(" (")[0]   # the attack and budget, not its step settings
        out.append("Song et al. (2019) found that adversarial training raises leakage, most when the attacker queries "
                   f"adversarial examples; with such queries ({queries}, the loss attack): "
                   f"{mr.verdict_sentence(adversarial, 'loss')}.")
    return out


def missing(mia_row):
    """Why a defense has no RMIA figure: no references of its recipe, or no MIA run."""
    return "no matched references" if mia_row else "not run"


def headline_rows(results_dir):
    """One row per defense of the standard protocol: clean accuracy, AutoAttack and the
    worst case at L-inf 0.1, the certified L2 accuracy at 0.5 where it applies, and
    RMIA's leakage."""
    rmia = {model: r for (model, attack), r in mia_results(results_dir, "standard").items()
            if attack == mr.HEADLINE_ATTACK}
    return [{"defense": r["defense"], "clean": r["clean (test set)"],
             f"AutoAttack, L-inf {HEADLINE_EPS:g}": r.get(f"AutoAttack @{HEADLINE_EPS:g}") or "-",
             f"{attacks.SOFT_APGD_LABEL}, L-inf {HEADLINE_EPS:g}":
                 r.get(f"{attacks.SOFT_APGD_LABEL} @{HEADLINE_EPS:g}") or "-",
             f"worst case, L-inf {HEADLINE_EPS:g}": r[f"worst case @{HEADLINE_EPS:g}"],
             "certified, L2 0.5": r.get("certified @0.5") or "-",
             "RMIA AUC": mr.auc_text(rmia.get(r["model"])) or missing(rmia.get(r["model"])),
             "RMIA AUC, mean (range) over targets": mr.spread_text(rmia.get(r["model"])) or "-",
             "RMIA TPR at 1% FPR": mr.tpr_text(rmia.get(r["model"])) or missing(rmia.get(r["model"]))}
            for r in read_rows(Path(results_dir) / "evaluation_standard_summary.csv")]


def study_vs_ours(cells, measure):
    """'67.4 / 79.2 [78.4, 80.0]': the study's figure and ours for one measure."""
    r = next((c for c in cells if c["measure"] == measure), None)
    if not r or r["ours"] == "":
        return ""
    interval = f" [{float(r['ci_low']):.1f}, {float(r['ci_high']):.1f}]" if r["ci_low"] else ""
    ours = f"{float(r['ours']):.1f}{interval}"
    return (f"{float(r['study']):.1f} / " if r["study"] != "" else "") + ours


def table4_compact_rows(results_dir):
    """The study's Table 4 beside ours, one row per configuration: study / ours (%)."""
    cells = read_rows(Path(results_dir) / "evaluation_paper_table4.csv")
    fixed = next((c["measure"].split(", ", 1)[1] for c in cells if c["measure"].startswith("FGSM-k adaptive, ")), "")
    rows = []
    for configuration in dict.fromkeys(c["configuration"] for c in cells):
        mine = [c for c in cells if c["configuration"] == configuration]
        rows.append({"configuration": configuration, "test accuracy": study_vs_ours(mine, "test accuracy"),
                     "FGSM-k, its 20 images": study_vs_ours(mine, "FGSM-k adversarial (transfer), study's 20"),
                     f"FGSM-k, {fixed} images": study_vs_ours(mine, f"FGSM-k transfer, {fixed}"),
                     f"FGSM-k adaptive, {fixed}": study_vs_ours(mine, f"FGSM-k adaptive, {fixed}"),
                     "MIA accuracy, 0.9999 rule": study_vs_ours(mine, "MIA accuracy (study's rule)")})
    return rows


def percent(cell):
    """'0.4% [0.1, 1.0]' from a table cell '0.4 [0.1, 1.0]'."""
    value, _, interval = cell.partition(" ")
    return f"{value}% {interval}".strip()


def bounds(cell):
    """(value, low, high) of a table cell '0.4 [0.1, 1.0]'."""
    value, _, interval = cell.partition(" [")
    low, high = interval.rstrip("]").split(", ")
    return float(value), float(low), float(high)


def findings(results_dir):
    """The README's findings, as sentences made from the results: every number, and
    every verb that judges one ("does not defend", "holds best", "overstates"), follows
    from the CSVs, so a rerun with other numbers cannot leave a false sentence; a
    sentence whose results are missing is left out."""
    # by trained model, not by label: a table label may change, the model's name says what was trained
    summary = {r["model"]: r for r in read_rows(Path(results_dir) / "evaluation_standard_summary.csv")}
    standard = PROTOCOLS["standard"]
    base_name, dual_name = base_model_name(standard), filters.filter_model_name(standard, "dual")
    noise_name = cr.noise_model_name(standard, 0.25)
    pgd_name, fgsm_name = Recipe("pgd").name(standard.architecture), Recipe("fgsm").name(standard.architecture)
    fgsm_rs_name = Recipe("fgsm-rs").name(standard.architecture)
    worst, eps = f"worst case @{HEADLINE_EPS:g}", f"{HEADLINE_EPS:g}"
    out = []
    if {base_name, dual_name} <= set(summary):
        base, dual = summary[base_name], summary[dual_name]
        overlaps = bounds(dual[worst])[1] <= bounds(base[worst])[2]
        out.append("The study's pick, the dual 2x2 median filter, "
                   + ("does not defend against an attacker who knows it" if overlaps else
                      "keeps more than the undefended CNN against an attacker who knows it")
                   + f": at L-inf {eps} it keeps {percent(dual[worst])} of 1,000 test images under the worst "
                   f"case of our attacks (undefended CNN: {percent(base[worst])}), against "
                   f"{percent(dual['FGSM-k transfer'])} under FGSM-k crafted without the filter, as the study "
                   f"attacked it.")
    if pgd_name in summary:
        pgd = summary[pgd_name]
        best = max(summary.values(), key=lambda r: bounds(r[worst])[0])
        out.append(f"PGD adversarial training keeps {percent(pgd[worst])} at L-inf {eps} for a clean accuracy of "
                   f"{percent(pgd['clean (test set)'])}"
                   + (", the most of every defense" if best is pgd else
                      f"; {best['defense']} keeps the most, {percent(best[worst])}") + ".")
        aa = f"AutoAttack @{HEADLINE_EPS:g}"
        if pgd.get(aa):
            pgd20, autoattack = bounds(pgd[f"PGD-20 @{eps}"])[0], bounds(pgd[aa])[0]
            verb = "overstates it" if pgd20 > autoattack else "does not overstate it"
            out.append(f"PGD-20 alone {verb}: it leaves {percent(pgd[f'PGD-20 @{eps}'])}, AutoAttack "
                       f"{percent(pgd[aa])}.")
    if {fgsm_name, fgsm_rs_name} <= set(summary):
        out.append(f"FGSM training keeps {percent(summary[fgsm_name][worst])} without a random start and "
                   f"{percent(summary[fgsm_rs_name][worst])} with one.")
    if summary.get(noise_name, {}).get("certified @0.5"):
        certified = percent(summary[noise_name]["certified @0.5"])
        out.append(f"Randomized smoothing (sigma 0.25) certifies {certified} of 500 test images at L2 radius 0.5.")
    out += leakage_findings(results_dir)
    cells = read_rows(Path(results_dir) / "evaluation_paper_table4.csv")
    judged = [c for c in cells if c["study_within_ci"] in ("True", "False")]
    if judged:
        inside = sum(c["study_within_ci"] == "True" for c in judged)
        out.append(f"Rebuilt the study's way (`--protocol paper`), {inside} of the {len(judged)} figures of its "
                   f"Table 4 that we can set beside ours lie within our 95% intervals (results/table4_compact.md).")
    return " ".join(out)


def write_digest(results_dir):
    """results/findings.md, headline.md and table4_compact.md (what the README shows,
    made from the stages' CSVs), and results/README.md, every table of the folder."""
    results_dir = Path(results_dir)
    headline = headline_rows(results_dir)
    if headline:
        write_table(headline, results_dir / "headline",
                    title="Every defense, standard protocol: accuracy % [exact 95% interval]; clean on 10,000 test "
                          "images; AutoAttack (Croce & Hein's standard version: APGD-CE, APGD-T, FAB-T, Square; "
                          "their rand version for smoothing: APGD-CE, APGD-DLR with EOT-20 through the noisy base "
                          "classifier), soft-smoothed APGD (ours: APGD-CE, APGD-DLR on the soft smoothed "
                          "classifier) and the worst case over every attack of the suite on 1,000 (for smoothing, "
                          f"the 500 it certifies, judged by Cohen's PREDICT at n {cr.PREDICT_N:,}, alpha "
                          f"{cr.PREDICT_ALPHA:g}); certified on 500; RMIA on the defense's own model (2,000 members, "
                          "2,000 non-members; its references the other models of its recipe, all of its size), "
                          "and its mean (range) over every model of the recipe as the target")
    compact = table4_compact_rows(results_dir)
    if compact:
        write_table(compact, results_dir / "table4_compact",
                    title="The study's Table 4 beside ours: study / ours in %, ours with its exact 95% interval "
                          "(FGSM-k crafted on the CNN without the filter, as the study did; 'adaptive' through the "
                          "filter)")
    atomic_write_text(results_dir / "findings.md", findings(results_dir) + "\n")
    parts = ["# Every table of this folder\n", "Generated by `python evaluation_report.py` from the CSV files here "
             "(each table's CSV has the full precision); nothing is typed by hand.\n"]
    for path in sorted(results_dir.glob("*.md")):
        if path.name != "README.md":
            parts += [f"## {path.stem}\n", markdown_table(path)]
    atomic_write_text(results_dir / "README.md", "\n".join(parts))


def main():
    """Bring every plain table's Markdown to the current rendering, redraw the evaluation
    figures and regenerate the digest, from results/ without running anything else."""
    import argparse
    import sys
    parser = argparse.ArgumentParser(description="Re-render every table, redraw the evaluation figures and "
                                     "regenerate findings.md and README.md of a results folder, running nothing.")
    parser.add_argument("results_dir", nargs="?", type=Path, default=Path(__file__).resolve().parent / "results",
                        help="the results folder (default: results/ beside this file)")
    results_dir = parser.parse_args().results_dir
    if not results_dir.is_dir():
        sys.exit(f"error: no results folder {results_dir}")
    try:
        recheck_certificates(results_dir)
        rerender_markdown(results_dir)
        redraw_figures(results_dir)
        write_digest(results_dir)
    except (KeyError, ValueError, IndexError) as error:   # a table cut short or edited by hand
        sys.exit(f"error: a table in {results_dir} is not as a run writes it ({type(error).__name__}: {error}); "
                 "run the stage that writes it again")


if __name__ == "__main__":
    main()
