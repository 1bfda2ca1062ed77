"""The evaluation's tables, made from its rows: the summary of every defense, the
study's Table 4 beside ours and results/summary.md. It reads what the evaluation jobs
and the other stages wrote (membership inference, certification) through their own
path functions."""
import csv
import dataclasses
import json
from pathlib import Path

import numpy as np

from fashion_defenses.attacks import suite
from fashion_defenses.attacks.suite import HEADLINE_EPS
from fashion_defenses.data import STUDY_TABLE4
from fashion_defenses.defenses import certificates
from fashion_defenses.evaluation.result import record_path
from fashion_defenses.evaluation.rows import autoattack_row, fgsm_k_label, find, fixed_images
from fashion_defenses.privacy import report as mr
from fashion_defenses.reporting import accuracy_ci, atomic_write_text, markdown_table, pct


def mia_results(results_dir, protocol_name):
    """membership_inference.py's rows for this protocol, by (model, attack); {} if it has not run."""
    path = Path(f"{mr.table_stem(results_dir, protocol_name)}.csv")
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {(r["model"], r["attack"]): r for r in csv.DictReader(f)}


def study_mia_accuracy(results_dir, model_name):
    """The study's MIA accuracy with its interval (the paper protocol's Table 4), from
    the saved decisions."""
    path = mr.scores_path(results_dir, "paper", model_name, "study")
    if not path.exists():
        return None
    saved = np.load(path)
    return accuracy_ci(saved["decision"] == saved["is_member"])


def certified_at(results_dir, defense, radius):
    """Certified accuracy at an L2 radius from certified_robustness.py's log (largest n),
    as '%' with its interval; 'n/a' beyond the largest radius that n samples can
    certify; '' for a defense that certifies nothing."""
    rows, cap = (certificates.certified_log_rows(results_dir, defense.name, defense.sigma) if defense.sigma
                 else (None, None))
    if rows is None:
        return ""
    return "n/a" if radius > cap else pct(certificates.certified_accuracy(rows, radius))


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
           f"{suite.SOFT_APGD_LABEL} @{HEADLINE_EPS:g}": pct(find(rows, suite.SOFT_APGD_LABEL, HEADLINE_EPS,
                                                                   fixed)),
           f"worst case @{HEADLINE_EPS:g}": pct(find(rows, "worst case", HEADLINE_EPS, fixed))}
    for radius in settings.l2_radii:
        row[f"L2 PGD @{radius:g}"] = pct(find(rows, "L2 PGD-20", radius, fixed))
        row[f"certified @{radius:g}"] = certified_at(results_dir, defense, radius)
    rmia = mr.headline_attack(mia_rows.values())
    row.update({"MIA loss AUC": fmt(mia_cell("loss", "auc")), "RMIA AUC": fmt(mia_cell(rmia, "auc")),
                "RMIA TPR@1%FPR": fmt(mia_cell(rmia, "tpr_at_1%_fpr")),
                "study-rule MIA acc": fmt(mia_cell("study", "accuracy")),
                "n (attacks)": find(rows, "benign", images=fixed)["n"],
                "sanity": "ok" if all(p for _, p, _ in checks) else
                          "FLAGGED: " + "; ".join(c for c, p, _ in checks if not p)})
    return row


def published_records(results_dir, protocol_name, defenses):
    """(defense, its evaluation record) of each defense whose record is on disk, in order."""
    found = []
    for defense in defenses:
        path = record_path(results_dir, protocol_name, defense.key)
        if path.exists():
            found.append((defense, json.loads(path.read_text())))
        else:
            print(f"  no evaluation of {defense.label} yet ({path}): not in the tables")
    return found


def leaderboard(entries, mia_rows, settings, results_dir):
    """The summary rows of (defense, rows, checks) entries, the most robust first (worst
    case at the headline eps; its interval's centre decides, as the table shows it)."""
    rows = [summary_row(defense, r, checks, mia_rows, settings, results_dir) for defense, r, checks in entries]
    robust = lambda row: float(row[f"worst case @{HEADLINE_EPS:g}"].split()[0] or -1)  # noqa: E731
    return sorted(rows, key=robust, reverse=True)


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


def read_rows(path):
    """A results CSV as dicts; [] if it has not been written."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
