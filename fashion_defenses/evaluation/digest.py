"""What the README shows, made from the stages' CSVs: the findings, the headline
table, the study's Table 4 beside ours, and results/README.md."""
from pathlib import Path

from fashion_defenses.attacks import suite
from fashion_defenses.attacks.suite import HEADLINE_EPS
from fashion_defenses.data import PROTOCOLS
from fashion_defenses.defenses import certificates, filters
from fashion_defenses.defenses.recipes import Recipe
from fashion_defenses.evaluation.report import mia_results, read_rows
from fashion_defenses.models import base_model_name
from fashion_defenses.privacy import report as mr
from fashion_defenses.reporting import atomic_write_text, markdown_table, write_table


def leakage_findings(results_dir):
    """Sentences on membership leakage from the standard protocol's RMIA rows and its
    verdicts against the undefended CNN over every target (Song et al.'s question: does
    a defense leak more?)."""
    mia = mia_results(results_dir, "standard")
    headline = mr.headline_attack(mia.values())
    rows = [r for (_, attack), r in mia.items() if attack == headline and r["auc"] != ""]
    if not rows:
        return []
    low, high = min(float(r["auc"]) for r in rows), max(float(r["auc"]) for r in rows)
    most = max(rows, key=lambda r: float(r["tpr_at_1%_fpr"]))
    targets = max(int(r["targets"]) for r in rows)
    out = [f"{mr.ATTACK_NAMES[headline]}, the stronger of RMIA's two configurations on the undefended CNN by TPR "
           f"at 1% FPR, each target calibrated on the models of its recipe outside its own complementary pair "
           f"({targets} per recipe, each trained on as many images as the defense's own), finds AUCs between "
           f"{low:.3f} and {high:.3f} on the defenses' own models; at 1% FPR it finds at most "
           f"{most['tp_at_1%_fpr']} of {int(most['n_members']):,} members ({most['defense']})."]
    rule = ("a defense leaks less (more) than the undefended CNN only where the paired 95% interval of the "
            "difference lies below (above) 0 on every one of its targets")
    clean = read_rows(f"{mr.table_stem(results_dir, 'standard')}_verdict.csv")
    if clean:
        out.append(f"Counted as {rule}, RMIA finds, {mr.verdict_sentence(clean, headline)}; "
                   f"{mr.verdict_sentence(clean, headline, 'auc')}.")
    adversarial = read_rows(f"{mr.table_stem(results_dir, 'standard', adversarial_queries=True)}_verdict.csv")
    if adversarial:
        queries = adversarial[0]["queries"].split(" (")[0]   # the attack and budget, not its step settings
        out.append("Song et al. (2019) found that adversarial training raises leakage, most when the attacker queries "
                   f"adversarial examples; with such queries ({queries}, the loss attack): "
                   f"{mr.verdict_sentence(adversarial, 'loss')}; {mr.verdict_sentence(adversarial, 'loss', 'auc')}.")
    return out


def missing(mia_row):
    """Why a defense has no RMIA figure: no references of its recipe, or no MIA run."""
    return "no matched references" if mia_row else "not run"


def headline_rows(results_dir):
    """One row per defense of the standard protocol: clean accuracy, AutoAttack and the
    worst case at L-inf 0.1, the certified L2 accuracy at 0.5 where it applies, and
    RMIA's leakage."""
    mia = mia_results(results_dir, "standard")
    headline = mr.headline_attack(mia.values())
    rmia = {model: r for (model, attack), r in mia.items() if attack == headline}
    return [{"defense": r["defense"], "clean": r["clean (test set)"],
             f"AutoAttack, L-inf {HEADLINE_EPS:g}": r.get(f"AutoAttack @{HEADLINE_EPS:g}") or "-",
             f"{suite.SOFT_APGD_LABEL}, L-inf {HEADLINE_EPS:g}":
                 r.get(f"{suite.SOFT_APGD_LABEL} @{HEADLINE_EPS:g}") or "-",
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


# How far one retraining moved a defense's robust accuracy by itself: PGD AT trained by the
# CLI on another CPU kept 75.1% under AutoAttack at L-inf 0.1 on the 1,000 fixed images,
# the published model 72.9% (issue 47). Two defenses of one model each that differ by no
# more than this are not ranked by the findings.
RETRAINING_SPREAD = 2.2   # percentage points
RETRAINING_NOTE = (f"one model each, and a second training of PGD AT on another CPU moved its figure by "
                   f"{RETRAINING_SPREAD:g} points")


# How far one retraining moved a study recipe's test accuracy by itself: dual + study AT
# (25 epochs, batch 32) scored 74.69% on the 10,000 test images at 02eeec4 and 66.90% when
# the job train-paper-at-b32 trained it again at 654074f (one fit per epoch since d5efbbd,
# so another shuffling stream, on another CPU). The study's figures are one training each.
PAPER_RETRAINING_SPREAD = 7.8   # percentage points


# Another training of FGSM AT, the same recipe: the run at 02eeec4 (its tables committed at
# 557d3f4: evaluation_standard_summary.csv, adversarial_training_standard.csv).
FGSM_OTHER_TRAINING = ("one training each: the run at 02eeec4 trained FGSM AT once more and that model had "
                       "collapsed (catastrophic overfitting: 2.5% [1.6, 3.7] under the worst case, 89.8% under FGSM, "
                       "4.3% under PGD-20), so whether training without a random start collapses varies from one "
                       "training to the next")


def within_retraining(a, b):
    """Whether two cells' accuracies differ by no more than one retraining moved one."""
    return abs(bounds(a)[0] - bounds(b)[0]) <= RETRAINING_SPREAD


def percent(cell):
    """'0.4% [0.1, 1.0]' from a table cell '0.4 [0.1, 1.0]'."""
    value, _, interval = cell.partition(" ")
    return f"{value}% {interval}".strip()


def bounds(cell):
    """(value, low, high) of a table cell '0.4 [0.1, 1.0]'."""
    value, _, interval = cell.partition(" [")
    low, high = interval.rstrip("]").split(", ")
    return float(value), float(low), float(high)


def pgd_training_findings(summary, pgd, worst):
    """What PGD adversarial training keeps, where it ranks among the defenses (no rank within
    training-run variation) and whether PGD-20 alone overstates it against AutoAttack."""
    eps, out = f"{HEADLINE_EPS:g}", []
    ranked = sorted(summary.values(), key=lambda r: -bounds(r[worst])[0])
    best, runner_up = ranked[0], ranked[1] if len(ranked) > 1 else None
    if best is not pgd:
        rank = f"; {best['defense']} keeps the most, {percent(best[worst])}"
        if within_retraining(pgd[worst], best[worst]):
            rank += f", as much as PGD AT within training-run variation ({RETRAINING_NOTE})"
    elif runner_up and within_retraining(pgd[worst], runner_up[worst]):
        rank = (f", as much as {runner_up['defense']} ({percent(runner_up[worst])}) within training-run "
                f"variation ({RETRAINING_NOTE})")
    else:
        rank = ", the most of every defense"
    out.append(f"PGD adversarial training keeps {percent(pgd[worst])} at L-inf {eps} for a clean accuracy of "
               f"{percent(pgd['clean (test set)'])}" + rank + ".")
    aa = f"AutoAttack @{eps}"
    if pgd.get(aa):
        pgd20, autoattack = bounds(pgd[f"PGD-20 @{eps}"])[0], bounds(pgd[aa])[0]
        verb = "overstates it" if pgd20 > autoattack else "does not overstate it"
        out.append(f"PGD-20 alone {verb}: it leaves {percent(pgd[f'PGD-20 @{eps}'])}, AutoAttack "
                   f"{percent(pgd[aa])}.")
    return out


def findings(results_dir):
    """The README's findings, as sentences made from the results: every number, and
    every verb that judges one ("does not defend", "holds best", "overstates"), follows
    from the CSVs, so a rerun with other numbers cannot leave a false sentence; a
    sentence whose results are missing is left out."""
    # by trained model, not by label: a table label may change, the model's name says what was trained
    summary = {r["model"]: r for r in read_rows(Path(results_dir) / "evaluation_standard_summary.csv")}
    standard = PROTOCOLS["standard"]
    base_name, dual_name = base_model_name(standard), filters.filter_model_name(standard, "dual")
    noise_name = certificates.noise_model_name(standard, 0.25)
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
        out += pgd_training_findings(summary, summary[pgd_name], worst)
    if {fgsm_name, fgsm_rs_name} <= set(summary):
        fgsm, fgsm_rs = summary[fgsm_name][worst], summary[fgsm_rs_name][worst]
        out.append(f"FGSM training keeps {percent(fgsm)} without a random start and {percent(fgsm_rs)} with one"
                   + (f", a difference within training-run variation ({RETRAINING_NOTE})"
                      if within_retraining(fgsm, fgsm_rs) else "") + f"; {FGSM_OTHER_TRAINING}.")
    if summary.get(noise_name, {}).get("certified @0.5"):
        certified = percent(summary[noise_name]["certified @0.5"])
        out.append(f"Randomized smoothing (sigma 0.25) certifies {certified} of 500 test images at L2 radius 0.5.")
    out += leakage_findings(results_dir)
    cells = read_rows(Path(results_dir) / "evaluation_paper_table4.csv")
    judged = [c for c in cells if c["study_within_ci"] in ("True", "False")]
    if judged:
        inside = sum(c["study_within_ci"] == "True" for c in judged)
        out.append(f"Rebuilt the study's way (`--protocol paper`), {inside} of the {len(judged)} figures of its "
                   f"Table 4 that we can set beside ours lie within our 95% intervals (results/table4_compact.md); "
                   f"those intervals cover the test images drawn, not the training, and training one of the study's "
                   f"recipes again (dual + study AT, 25 epochs, batch 32) moved its test accuracy by "
                   f"{PAPER_RETRAINING_SPREAD:g} points.")
    return " ".join(out)


PER_IMAGE_NOTE = (
    "`per_image/evaluation_<protocol>/<defense>.npz`, one file per defense of the evaluation: `images` (the "
    "test-set indices of the fixed images it was attacked on), `attacks` and `eps` (one entry per row of the "
    "evaluation table on those images) and `robust`, a boolean matrix (attack x image): True where the defense "
    "still classified the image right after that attack at that budget (`benign`: before any attack; `worst "
    "case`: after every attack at a budget <= eps). Each robust accuracy of the table is the mean of its row; "
    "two defenses attacked on the same images compare image by image "
    "(`fashion_defenses.evaluation.api.EvaluationResult` reads the same flags from Python).\n")


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
                          f"the 500 it certifies, judged by Cohen's PREDICT at n {certificates.PREDICT_N:,}, alpha "
                          f"{certificates.PREDICT_ALPHA:g}); certified on 500; RMIA on the defense's own model "
                          "(2,000 members, 2,000 non-members; its references the other models of its recipe, "
                          "all of its size), and its mean (range) over every model of the recipe as the target")
    compact = table4_compact_rows(results_dir)
    if compact:
        write_table(compact, results_dir / "table4_compact",
                    title="The study's Table 4 beside ours: study / ours in %, ours with its exact 95% interval "
                          "(FGSM-k crafted on the CNN without the filter, as the study did; 'adaptive' through the "
                          "filter)")
    atomic_write_text(results_dir / "findings.md", findings(results_dir) + "\n")
    parts = ["# Every table of this folder\n", "Generated by `python tools/redraw_results.py` from the CSV files here "
             "(each table's CSV has the full precision); nothing is typed by hand.\n"]
    for path in sorted(results_dir.glob("*.md")):
        if path.name not in ("README.md", "jobs.md"):   # the job table changes with every job: see its own file
            parts += [f"## {path.stem}\n", markdown_table(path)]
    if (results_dir / "per_image").is_dir():
        parts += ["## per_image\n", PER_IMAGE_NOTE]
    atomic_write_text(results_dir / "README.md", "\n".join(parts))
