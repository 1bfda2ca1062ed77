"""Membership inference's figures and tables from per-example scores (no model here):
decisions (a threshold cross-fitted on two folds, the study's fixed rule), AUC and TPR
at low FPR with their intervals, each target's leakage against the undefended CNN's
on the same examples, and the verdict over every target of a recipe."""
from pathlib import Path

import numpy as np

from fashion_defenses.privacy import attacks as ma
from fashion_defenses.reporting import atomic_write, pyplot, save_figure

STUDY_THRESHOLD = 0.9999
LOW_FPRS = (0.001, 0.01)
REFERENCE_ATTACKS = ("lira", "lira-online", "rmia", "rmia-offline", "rmia-augmented")
ATTACKS = ("study", "loss") + REFERENCE_ATTACKS
LEAKAGE_ATTACKS = ("loss", "lira-online", "rmia", "rmia-augmented")
# RMIA at privacy_meter's defaults and in its paper's configuration (privacy/attacks.py):
# the summary tables, the privacy plot and the README quote the stronger (headline_attack)
RMIA_CONFIGURATIONS = ("rmia", "rmia-augmented")
MIN_FALSE_POSITIVES = 10   # a TPR at an FPR allowing fewer false positives gets no verdict
VERDICTS = ("leaks less", "leaks more", "no verdict: not on every target")


# ------------------------------------------------------------------- files

def scores_path(results_dir, protocol_name, model_name, attack, adversarial_queries=False, target=0):
    """Where one target's scores under one attack are saved (arrays score, is_member,
    decision); target 0 is the defense's own model."""
    folder = protocol_name + ("_adversarial_queries" if adversarial_queries else "")
    suffix = f"_target{target}" if target else ""
    return Path(results_dir) / "mia" / "scores" / folder / f"{model_name}_{attack}{suffix}.npz"


def table_stem(results_dir, protocol_name, adversarial_queries=False):
    """The results table of a protocol's membership inference (.csv and .md)."""
    suffix = "_adversarial_queries" if adversarial_queries else ""
    return Path(results_dir) / f"membership_inference_{protocol_name}{suffix}"


def save_scores(path, score, is_member, decision):
    """Scores as float32 (the tables are computed from these same rounded scores, so
    the file reproduces them exactly), compressed: 20,000 per target and attack."""
    atomic_write(path, lambda f: np.savez_compressed(f, score=np.asarray(score, np.float32), is_member=is_member,
                                                    decision=np.asarray(decision)))


# ---------------------------------------------------------------- figures

def calibrated_threshold(score, is_member):
    """The threshold with the best balanced accuracy on calibration data."""
    candidates = np.unique(score)
    best, best_acc = candidates[0], -1.0
    for t in candidates[:: max(1, len(candidates) // 2000)]:
        acc = 0.5 * ((score[is_member] >= t).mean() + (score[~is_member] < t).mean())
        if acc > best_acc:
            best, best_acc = t, acc
    return float(best)


def study_decisions(max_softmax):
    """The study's rule: member if the top softmax probability exceeds 0.9999 (strictly)."""
    return np.asarray(max_softmax) > STUDY_THRESHOLD


def threshold_decisions(eval_score, calib_score, calib_is_member):
    """A threshold attack's decisions: the threshold is fitted on calibration data
    only; the evaluation labels never reach this function."""
    return np.asarray(eval_score) >= calibrated_threshold(np.asarray(calib_score), np.asarray(calib_is_member, bool))


def decisions(attack, score, is_member, fold):
    """Every audited example's decision: the study's fixed rule, or for a threshold
    attack cross-fitted (each fold decided by the threshold fitted on the other)."""
    if attack == "study":
        return study_decisions(score)
    out = np.zeros(len(score), bool)
    for f in (0, 1):
        out[fold == f] = threshold_decisions(score[fold == f], score[fold != f], is_member[fold != f])
    return out


def headline_attack(rows):
    """The stronger RMIA configuration on the undefended CNN by its TPR at 1% FPR (mean
    over targets; the AUC breaks ties), from the main table's rows; privacy_meter's
    defaults when the rows say nothing."""
    key = f"tpr_at_{fpr_key(LOW_FPRS[-1])}_mean"
    measured = {r["attack"]: r for r in rows if r.get("defense") == "undefended CNN"
                and r["attack"] in RMIA_CONFIGURATIONS and r.get(key) not in (None, "")}
    if not measured:
        return RMIA_CONFIGURATIONS[0]
    return max(RMIA_CONFIGURATIONS, key=lambda a: (float(measured[a][key]), float(measured[a]["auc_mean"]))
               if a in measured else (-1.0, -1.0))


def fpr_key(fpr):
    return f"{100 * fpr:g}%_fpr"


def metric_columns():
    """mia_metrics' keys, in its order (a row without figures has them empty)."""
    low = [f"{p}_{fpr_key(f)}{s}" for f in LOW_FPRS for p, s in
           (("tpr_at", ""), ("tpr_at", "_ci_low"), ("tpr_at", "_ci_high"), ("tp_at", ""), ("fp_at", ""))]
    return ["n_members", "n_nonmembers", "auc", "auc_ci_low", "auc_ci_high", *low, "at_top_score",
            "nonmembers_at_top", "balanced_acc", "accuracy", "advantage", "precision", "recall", "f1"]


def mia_metrics(score, is_member, decision):
    """Every figure from per-example scores (higher = more likely member) and the
    attack's yes/no decisions: AUC with its interval, TPR at each of LOW_FPRS on the
    full ROC with its true and false positives and exact interval, how many examples
    share the highest score (ties there leave a low FPR unresolved) and how many of
    them are non-members, and the decisions' balanced accuracy, precision, recall, F1."""
    from sklearn.metrics import balanced_accuracy_score, f1_score, precision_score, recall_score
    is_member, decision = np.asarray(is_member, bool), np.asarray(decision, bool)
    n_mem, n_non = int(is_member.sum()), int((~is_member).sum())
    auc = ma.auc_fast(score, is_member)
    auc_low, auc_high = ma.auc_interval(auc, n_mem, n_non)
    row = {"n_members": n_mem, "n_nonmembers": n_non, "auc": auc, "auc_ci_low": auc_low, "auc_ci_high": auc_high}
    for fpr in LOW_FPRS:
        s = ma.tpr_at_fpr_stats(score, is_member, fpr)
        key = fpr_key(fpr)
        row.update({f"tpr_at_{key}": s["tpr"], f"tpr_at_{key}_ci_low": s["ci_low"],
                    f"tpr_at_{key}_ci_high": s["ci_high"], f"tp_at_{key}": s["tp"], f"fp_at_{key}": s["fp"]})
    at_top = np.asarray(score) == np.max(score)
    row.update({"at_top_score": int(at_top.sum()), "nonmembers_at_top": int((at_top & ~is_member).sum())})
    tpr, fpr = decision[is_member].mean(), decision[~is_member].mean()
    row.update({"balanced_acc": float(balanced_accuracy_score(is_member, decision)),
                "accuracy": float((decision == is_member).mean()), "advantage": float(tpr - fpr),
                "precision": float(precision_score(is_member, decision, zero_division=0)),
                "recall": float(recall_score(is_member, decision, zero_division=0)),
                "f1": float(f1_score(is_member, decision, zero_division=0))})
    return row


def auc_text(row):
    """'0.531 [0.513, 0.549]' from a table row; '' for a row without figures."""
    if not row or row.get("auc", "") == "":
        return ""
    return f"{float(row['auc']):.3f} [{float(row['auc_ci_low']):.3f}, {float(row['auc_ci_high']):.3f}]"


def tpr_text(row, fpr=LOW_FPRS[-1]):
    """'23/2000, 1.15% [0.73, 1.72]': the members found at that FPR, as a count and a
    percentage with its exact interval."""
    if not row or row.get("auc", "") == "":
        return ""
    key = fpr_key(fpr)
    return (f"{row[f'tp_at_{key}']}/{row['n_members']}, {100 * float(row[f'tpr_at_{key}']):.2f}% "
            f"[{100 * float(row[f'tpr_at_{key}_ci_low']):.2f}, {100 * float(row[f'tpr_at_{key}_ci_high']):.2f}]")


# ------------------------------------------------------------- over targets

SPREAD_KEYS = ("auc", f"tpr_at_{fpr_key(LOW_FPRS[-1])}", f"tpr_at_{fpr_key(LOW_FPRS[0])}")


def over_targets(rows):
    """One row per (defense, attack): the defense's own model's figures (target 0) and,
    for each of SPREAD_KEYS, the mean, minimum and maximum over every target that has
    figures, with the targets' offline-RMIA a and population sizes."""
    groups = {}
    for r in rows:
        groups.setdefault((r["model"], r["attack"]), []).append(r)
    out = []
    for group in groups.values():
        row = dict(next(r for r in group if r["target"] == 0))
        measured = [r for r in group if r.get("auc") not in (None, "")]
        row["targets"] = len(measured)
        for key in SPREAD_KEYS:
            values = [float(r[key]) for r in measured]
            row.update({f"{key}_mean": np.mean(values) if values else "", f"{key}_min": min(values, default=""),
                        f"{key}_max": max(values, default="")})
        for key in ("offline_a", "population"):   # each target's, where the attack has one
            values = [str(r.get(key, "")) for r in group]
            row[key] = " / ".join(values) if any(values) else ""
        out.append(row)
    return out


def spread_text(row, key="auc", percent=False):
    """'0.522 (0.515-0.531, 3 targets)': the mean over targets and their range."""
    if not row or row.get(f"{key}_mean", "") in ("", None) or int(row.get("targets", 0)) < 2:
        return ""
    f = (lambda v: f"{100 * float(v):.2f}%") if percent else (lambda v: f"{float(v):.3f}")  # noqa: E731
    return f"{f(row[f'{key}_mean'])} ({f(row[f'{key}_min'])}-{f(row[f'{key}_max'])}, {row['targets']} targets)"


def markdown_rows(rows):
    """The table as a reader wants it: one formatted cell per figure, and one line for
    a defense's reference attacks when they had no references."""
    out = []
    blank = {"AUC [95%]": "", "AUC over targets": "", **{f"TPR at {100 * f:g}% FPR": "" for f in LOW_FPRS},
             f"TPR at {100 * LOW_FPRS[-1]:g}% FPR over targets": "", "balanced accuracy": ""}
    for r in rows:
        row = {"defense": r["defense"], "attack": r["attack"], **blank}
        if r["auc"] == "":
            if out and out[-1]["defense"] == r["defense"] and out[-1]["AUC [95%]"] == r["references"]:
                out[-1]["attack"] += f", {r['attack']}"
                continue
            row["AUC [95%]"] = r["references"]
        else:
            row.update({"AUC [95%]": auc_text(r), "AUC over targets": spread_text(r),
                        **{f"TPR at {100 * f:g}% FPR": tpr_text(r, f) for f in LOW_FPRS},
                        f"TPR at {100 * LOW_FPRS[-1]:g}% FPR over targets": spread_text(r, SPREAD_KEYS[1], True),
                        "balanced accuracy": f"{100 * float(r['balanced_acc']):.1f}%"})
        out.append(row)
    return out


# -------------------------------------------------------------- leakage

def leakage_table(results_dir, rows, adversarial=False, resamples=1000, seed=0):
    """Each defense's leakage minus the undefended CNN's, target by target on the same
    examples (target r of a recipe and target r of the undefended CNN have the same
    members), and pooled over the targets as privacy_meter pools them (every target's
    scores in one ROC; target "pooled"): the difference in AUC and in TPR at 1% and
    0.1% FPR with paired-bootstrap 95% intervals."""
    measured = {(r["model"], r["attack"], r["target"]): r for r in rows if r.get("auc") not in (None, "")}
    baseline = next((r["model"] for r in rows if r["defense"] == "undefended CNN"), None)
    table, pools = [], {}
    for (model, attack, target), r in measured.items():
        if model == baseline or attack not in LEAKAGE_ATTACKS or (baseline, attack, target) not in measured:
            continue
        protocol = r["protocol"]
        a = np.load(scores_path(results_dir, protocol, model, attack, adversarial, target))
        b = np.load(scores_path(results_dir, protocol, baseline, attack, adversarial, target))
        if not np.array_equal(a["is_member"], b["is_member"]):
            raise ValueError(f"target {target} of {model} and of {baseline} have different members")
        d = ma.paired_difference(a["score"], b["score"], a["is_member"], LOW_FPRS[-1], resamples, seed, LOW_FPRS[0])
        common = {"defense": r["defense"], "model": model, "attack": attack, "queries": r["queries"]}
        table.append({**common, "target": target, "nonmembers": int((~a["is_member"]).sum()), **d})
        pools.setdefault((model, attack), (common, []))[1].append((a["score"], b["score"], a["is_member"]))
    for common, scores in pools.values():
        if len(scores) > 1:
            a, b, is_member = (np.concatenate(parts) for parts in zip(*scores))
            table.append({**common, "target": "pooled", "nonmembers": int((~is_member).sum()),
                          **ma.paired_difference(a, b, is_member, LOW_FPRS[-1], resamples, seed, LOW_FPRS[0])})
    return table


def verdict(lows, highs):
    """'leaks less' where every target's interval lies below 0, 'leaks more' where every
    one lies above, otherwise no verdict: a difference that one training run of the
    recipe does not show is not the recipe's."""
    if lows and all(h < 0 for h in highs):
        return VERDICTS[0]
    if lows and all(lo > 0 for lo in lows):
        return VERDICTS[1]
    return VERDICTS[2]


# the verdict table's metrics, by column prefix
METRICS = {"auc": "AUC", "tpr": f"TPR at {100 * LOW_FPRS[-1]:g}% FPR", "tpr01": f"TPR at {100 * LOW_FPRS[0]:g}% FPR"}


def false_positives_allowed(nonmembers, fpr=LOW_FPRS[0]):
    return int(np.floor(fpr * nonmembers + 1e-9))


def difference_text(metric, d, low=None, high=None):
    """A difference in AUC (+0.012) or in TPR, in percentage points (+1.2 pp)."""
    scale, unit, digits = (1, "", 3) if metric == "auc" else (100, " pp", 2)   # tpr, tpr01: in points
    text = f"{scale * float(d):+.{digits}f}{unit}"
    return text if low is None else f"{text} [{scale * float(low):+.{digits}f}, {scale * float(high):+.{digits}f}]"


def verdict_table(leakage):
    """One row per (defense, attack), for each metric (METRICS): each target's
    difference with its interval, their mean and standard deviation over targets, the
    pooled difference, and the verdict, which rests on every target. At 0.1% FPR only
    where a target's non-members allow MIN_FALSE_POSITIVES false positives; the row
    says how many they allow."""
    groups = {}
    for r in leakage:
        groups.setdefault((r["model"], r["attack"]), []).append(r)
    out = []
    for (model, attack), group in groups.items():
        pooled = next((r for r in group if r["target"] == "pooled"), None)
        group = sorted((r for r in group if r["target"] != "pooled"), key=lambda r: int(r["target"]))
        allowed = min(false_positives_allowed(int(r["nonmembers"])) for r in group)
        row = {"defense": group[0]["defense"], "model": model, "attack": attack, "queries": group[0]["queries"],
               "targets": len(group), f"false_positives_at_{fpr_key(LOW_FPRS[0])}": allowed}
        for metric in METRICS:
            if metric == "tpr01" and allowed < MIN_FALSE_POSITIVES:
                row.update({f"d_{metric}_per_target": "", f"d_{metric}_mean": "", f"d_{metric}_sd": "",
                            f"d_{metric}_pooled": "", f"verdict_{metric}": f"no verdict: {allowed} false positives "
                            f"allowed (fewer than {MIN_FALSE_POSITIVES})"})
                continue
            d = [float(r[f"d_{metric}"]) for r in group]
            row.update({f"d_{metric}_per_target": " / ".join(
                            difference_text(metric, r[f"d_{metric}"], r[f"d_{metric}_low"], r[f"d_{metric}_high"])
                            for r in group),
                        f"d_{metric}_mean": float(np.mean(d)), f"d_{metric}_sd": float(np.std(d, ddof=1))
                        if len(d) > 1 else "",
                        f"d_{metric}_pooled": difference_text(metric, pooled[f"d_{metric}"], pooled[f"d_{metric}_low"],
                                                              pooled[f"d_{metric}_high"]) if pooled else "",
                        f"verdict_{metric}": verdict([float(r[f"d_{metric}_low"]) for r in group],
                                                     [float(r[f"d_{metric}_high"]) for r in group])})
        out.append(row)
    return out


def plot_roc(results_dir, rows, attack, title, path, adversarial=False):
    """ROC curves of one attack on the defenses' own models, on log axes; the FPR range
    that rests on fewer than 10 non-members is shaded (a curve there is a handful of
    examples)."""
    from sklearn.metrics import roc_curve
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 5.2))
    rows = [r for r in rows if r["attack"] == attack and r.get("auc") not in (None, "") and r.get("target", 0) == 0]
    colors = plt.cm.tab20(np.linspace(0, 1, 20))
    for i, r in enumerate(rows):
        saved = np.load(scores_path(results_dir, r["protocol"], r["model"], attack, adversarial))
        fpr, tpr, _ = roc_curve(saved["is_member"], saved["score"], drop_intermediate=False)   # every point
        fpr, tpr = fpr[1:], tpr[1:]   # from the highest score on: (0, 0) has no place on log axes
        # tab20's dark shades first, then its light ones: up to 20 distinct colours
        ax.loglog(np.maximum(fpr, 1e-4), np.maximum(tpr, 1e-4), color=colors[(2 * i) % 20 + (2 * i) // 20 % 2],
                  lw=1.2, label=f"{r['defense']} (AUC {r['auc']:.3f})")
    ax.loglog([1e-4, 1], [1e-4, 1], "k:", lw=1, label="chance")
    if rows:
        ax.axvspan(1e-4, 10 / rows[0]["n_nonmembers"], color="0.88", zorder=0,
                   label=f"FPR on < 10 of {rows[0]['n_nonmembers']} non-members")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(1e-4, 1), ylim=(1e-4, 1), title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6, loc="lower right")
    save_figure(fig, path)


ATTACK_NAMES = {"loss": "the loss attack", "lira-online": "LiRA", "rmia": "RMIA (privacy_meter's defaults)",
                "lira": "offline LiRA", "rmia-offline": "offline RMIA",
                "rmia-augmented": "RMIA (its paper's configuration)"}


def verdict_sentence(verdicts, attack, metric="tpr"):
    """The finding from the verdict table for one metric (METRICS): which defenses leak
    less or more than the undefended CNN by `attack` on every target, with their mean
    difference, and which other attacks see the same by that metric."""
    by_defense = {}
    for r in verdicts:
        by_defense.setdefault(r["defense"], {})[r["attack"]] = r
    parts = []
    for label, word in ((VERDICTS[1], "more"), (VERDICTS[0], "less")):
        named = []
        for defense, rows in by_defense.items():
            if attack not in rows or rows[attack][f"verdict_{metric}"] != label:
                continue
            others = [a for a in rows if a != attack]
            agree = [ATTACK_NAMES[a] for a in others if rows[a][f"verdict_{metric}"] == label]
            disagree = [ATTACK_NAMES[a] for a in others if rows[a][f"verdict_{metric}"] != label]
            seen = "; ".join(x for x in (f"also {', '.join(agree)}" if agree else "",
                                         f"not {', '.join(disagree)}" if disagree else "") if x)
            named.append(f"{defense} ({difference_text(metric, rows[attack][f'd_{metric}_mean'])} on average"
                         + (f"; {seen}" if seen else "") + ")")
        parts.append(f"{word} for {', '.join(named)}" if named else f"no defense leaks {word} on every target")
    return f"by {METRICS[metric]}, " + "; ".join(parts)
