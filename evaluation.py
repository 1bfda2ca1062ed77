"""One uniform evaluation of every defense: clean accuracy, L-inf and L2 robustness
under adaptive attacks, membership inference, and the sanity checks of Carlini et al.
(2019, "On Evaluating Adversarial Robustness"), every figure with n and an exact 95%
interval. Under --protocol paper it also sets the study's Table 4 beside ours.

    python evaluation.py [--protocol standard|paper] [--train-missing] [--quick]
"""
import dataclasses
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

import attacks
import certified_robustness as cr
import input_preprocessing as ip
import membership_inference as mia
import model as core
import runtime_adversarial_training as rat

HEADLINE_EPS = 0.1          # the L-inf budget of the headline robust accuracy
UNBOUNDED_MAX_ACC = 0.05    # an eps = 1 attack that leaves more than this correct is not working
MIA_ATTACKS = ("study", "loss", "lira")


@dataclasses.dataclass(frozen=True)
class Settings:
    """How hard every defense of a run is attacked: the same for all of them."""
    n_attack: int            # fixed, seeded test images every attack runs on
    eps_grid: tuple          # L-inf budgets of PGD-20 (the accuracy-vs-eps curve)
    long_attacks: tuple      # (steps, restarts) of the stronger PGD runs at HEADLINE_EPS, in order
    l2_radii: tuple          # L2 PGD-20 budgets, set beside the certified accuracy
    eot: int                 # EOT draws when attacking a smoothed classifier
    n_vote: int              # noise draws behind each prediction of a smoothed classifier


SETTINGS = {
    "standard": Settings(1000, (0.02, 0.05, attacks.STUDY_EPS, 0.1, 0.15), ((40, 1), (100, 1), (100, 2)),
                         (0.5, 1.0), eot=8, n_vote=100),
    # the study's CNN is ~20x slower: fewer and shorter attacks, still on 1,000 images
    "paper": Settings(1000, (attacks.STUDY_EPS, 0.1), ((40, 1),), (), eot=4, n_vote=100),
    "quick": Settings(100, (attacks.STUDY_EPS, 0.1), ((20, 2),), (0.5,), eot=2, n_vote=20),
}


# ------------------------------------------------------------------ the defenses

@dataclasses.dataclass
class Defense:
    """One defended model: what the tables call it, where it is cached, and how its
    technique script trains it (for --train-missing)."""
    label: str
    kind: str
    name: str                 # models/<name>.keras
    train: object             # () -> (model, sidecar), the technique script's own function
    sigma: float = 0.0        # > 0: the smoothed classifier around this noise-trained model
    paper_row: str = ""       # the study's Table 4 configuration it reproduces


def catalogue(args, data):
    """Every defense of the protocol, in table order (a subset with --quick)."""
    protocol = args.protocol_config
    arch = protocol.architecture
    defenses = [Defense("undefended CNN", "undefended", arch, lambda: core.get_base_model(args, data))]
    filters = ("dual",) if protocol.name == "paper" else ("median3", "dual")
    for f in filters:
        defenses.append(Defense(f"{f} filter", "filter", f"{arch}_{f}", lambda f=f: ip.get_filter_model(args, f, data),
                                paper_row="median filter only" if protocol.name == "paper" else ""))
    if protocol.name == "paper":
        for key, recipe in rat.PAPER_RECIPES.items():
            recipe = dataclasses.replace(recipe, init=arch + ("_dual" if recipe.filter else ""))
            label = ("dual + " if recipe.filter else "") + f"study AT {recipe.epochs} ep b{recipe.batch_size}"
            defenses.append(Defense(label, "filter + adversarial training" if recipe.filter else "adversarial training",
                                    recipe.name(arch), lambda r=recipe: rat.train_adversarially(args, r, data),
                                    paper_row=key))
    else:
        for recipe in rat.STANDARD_RECIPES:
            label = ("dual + " if recipe.filter else "") + f"{recipe.method} AT"
            defenses.append(Defense(label, "filter + adversarial training" if recipe.filter else "adversarial training",
                                    recipe.name(arch), lambda r=recipe: rat.train_adversarially(args, r, data)))
        for sigma in cr.SIGMAS:
            defenses.append(Defense(f"smoothing sigma {sigma:g}", "randomized smoothing",
                                    cr.noise_model_name(protocol, sigma),
                                    lambda s=sigma: cr.get_noise_model(args, s, data), sigma=sigma))
    if args.quick:
        keep = {arch, f"{arch}_dual", rat.Recipe("pgd").name(arch), cr.noise_model_name(protocol, 0.25),
                rat.PAPER_RECIPES["dual median + AT (25 ep, batch 16), the final pick"].name(arch)}
        defenses = [d for d in defenses if d.name in keep]
    return defenses


def load_defenses(args, defenses):
    """(defense, model) for each defense whose model is cached; trained first with
    --train-missing, otherwise reported and skipped."""
    found = []
    for defense in defenses:
        model, _ = core.load_model(args.models_dir, defense.name, mia.custom_objects())
        if model is None and args.train_missing:
            model, _ = defense.train()
        if model is None:
            print(f"  skipped {defense.label}: no {core.model_path(args.models_dir, defense.name)} "
                  "(run its script, or this one with --train-missing)")
            continue
        found.append((defense, model))
    return found


# ------------------------------------------------------ the one evaluation function

class Target:
    """A defense as the attacker and the judge see it: `correct` says which images it
    classifies right; `views` are what an adaptive attacker differentiates, as
    (label, model, EOT draws). A smoothed classifier predicts by its vote over
    n_vote noise draws (no abstention) and is attacked with EOT over the noise."""

    def __init__(self, model, sigma, settings, seed):
        if sigma:
            base = model.layers[-1]
            smooth = cr.Smooth(base, sigma)
            self.correct = lambda x, y: cr.smoothed_correct(smooth, x, y, settings.n_vote, seed)
            self.views = [("EOT over the noise", cr.noisy_model(base, sigma), settings.eot)]
        else:
            self.correct = lambda x, y: core.predict_labels(model, x) == y
            self.views = ip.attack_views(model)

    def attacked(self, make_adversarial, y):
        """Worst case per image over the views: correct only where the attack
        make_adversarial(view, eot) -> x_adv failed through every view."""
        correct = np.ones(len(y), dtype=bool)
        for _, view, eot in self.views:
            correct &= self.correct(make_adversarial(view, eot), y)
        return correct

    def describe(self):
        return " + ".join(label + (f", EOT-{eot}" if eot > 1 else "") for label, _, eot in self.views)


def long_attack_name(steps, restarts):
    return f"PGD-{steps}" + (f"x{restarts}" if restarts > 1 else "")


def evaluate(target, data, idx, transfer, settings, seed, study_idx=None):
    """Every measurement of one defense, as rows (attack, norm, eps, images, n, acc,
    ci_low, ci_high). Attacks run on the test images idx; transfer holds FGSM-k and
    PGD-20 examples crafted on the undefended CNN for those images."""
    x, y = data.x_test[idx], data.y_test[idx]
    rows = []

    def pgd(**options):
        return target.attacked(lambda view, eot: attacks.pgd(view, x, y, eot_samples=eot, seed=seed, **options), y)

    def fgsm_k(xs, ys):
        return target.attacked(lambda view, eot: attacks.fgsm_k(view, xs, ys), ys)

    def add(attack, norm, eps, images, correct):
        rows.append({"attack": attack, "norm": norm, "eps": round(float(eps), 4), "images": images,
                     **core.accuracy_ci(correct)})
        return correct

    n_train = min(len(data.y_train), 10000)
    add("clean", "-", 0, "test set", target.correct(data.x_test, data.y_test))
    add("clean (train)", "-", 0, f"first {n_train} training", target.correct(data.x_train[:n_train],
                                                                             data.y_train[:n_train]))
    if study_idx is not None:  # the study's own 20 images, drawn with replacement
        xs, ys = data.x_test[study_idx], data.y_test[study_idx]
        add("benign", "-", 0, "study's 20", target.correct(xs, ys))
        add("FGSM-k transfer", "linf", attacks.STUDY_EPS, "study's 20", target.correct(transfer["fgsm_k_study"], ys))
        add("FGSM-k adaptive", "linf", attacks.STUDY_EPS, "study's 20", fgsm_k(xs, ys))
    fixed = f"{len(y)} fixed"
    add("benign", "-", 0, fixed, target.correct(x, y))
    add("FGSM-k transfer", "linf", attacks.STUDY_EPS, fixed, target.correct(transfer["fgsm_k"], y))
    add("FGSM-k adaptive", "linf", attacks.STUDY_EPS, fixed, fgsm_k(x, y))
    at_headline = [add("FGSM", "linf", HEADLINE_EPS, fixed,
                       pgd(eps=HEADLINE_EPS, steps=1, step_size=HEADLINE_EPS, random_start=False))]
    at_headline.append(add("PGD-20 transfer", "linf", HEADLINE_EPS, fixed, target.correct(transfer["pgd"], y)))
    for eps in settings.eps_grid:
        correct = add("PGD-20", "linf", eps, fixed, pgd(eps=eps, steps=20))
        if eps == HEADLINE_EPS:
            at_headline.append(correct)
    for steps, restarts in settings.long_attacks:
        at_headline.append(add(long_attack_name(steps, restarts), "linf", HEADLINE_EPS, fixed,
                               pgd(eps=HEADLINE_EPS, steps=steps, restarts=restarts)))
    add("worst case", "linf", HEADLINE_EPS, fixed, np.logical_and.reduce(at_headline))
    add("unbounded PGD-20", "linf", 1.0, fixed, pgd(eps=1.0, steps=20))
    for radius in settings.l2_radii:
        add("L2 PGD-20", "l2", radius, fixed, pgd(eps=radius, norm="l2", steps=20, step_size=radius / 8))
    return rows


def fixed_images(rows):
    """The 'images' tag of the fixed attack set in a defense's rows."""
    return next(r["images"] for r in rows if r["attack"] == "benign" and r["images"].endswith("fixed"))


def find(rows, attack, eps=None, images=None):
    """The row of an attack (at eps, on those images); None if absent."""
    for r in rows:
        if r["attack"] == attack and (eps is None or abs(r["eps"] - eps) < 1e-4) and \
                (images is None or r["images"] == images):
            return r
    return None


# ----------------------------------------------------------------- sanity checks

def sanity_checks(rows, settings):
    """Carlini et al.'s checks of an evaluation, from one defense's rows: a list of
    (check, passed, detail). Differences smaller than an interval are noise."""
    fixed = fixed_images(rows)
    pick = lambda attack, eps: find(rows, attack, eps, fixed)  # noqa: E731
    checks = []
    curve = [pick("PGD-20", eps) for eps in settings.eps_grid]
    rises = [f"{a['eps']:g}->{b['eps']:g}" for a, b in zip(curve, curve[1:]) if b["acc"] > a["ci_high"]]
    checks.append(("accuracy falls with eps", not rises, "rises at " + ", ".join(rises) if rises else "monotone"))
    unbounded = pick("unbounded PGD-20", 1.0)
    checks.append(("unbounded attack reaches ~0%", unbounded["acc"] <= UNBOUNDED_MAX_ACC,
                   f"{100 * unbounded['acc']:.1f}% at eps 1"))
    pgd, fgsm = pick("PGD-20", HEADLINE_EPS), pick("FGSM", HEADLINE_EPS)
    checks.append(("PGD no weaker than FGSM", pgd["acc"] <= fgsm["ci_high"],
                   f"PGD-20 {100 * pgd['acc']:.1f}% vs FGSM {100 * fgsm['acc']:.1f}%"))
    chain = [pgd] + [pick(long_attack_name(*a), HEADLINE_EPS) for a in settings.long_attacks]
    shifts = [(a, b) for a, b in zip(chain, chain[1:]) if abs(a["acc"] - b["acc"]) > (a["ci_high"] - a["ci_low"]) / 2]
    checks.append(("more steps/restarts change little", not shifts,
                   "; ".join(f"{a['attack']} {100 * a['acc']:.1f}% -> {b['attack']} {100 * b['acc']:.1f}%"
                             for a, b in shifts) or "converged"))
    weaker = [f"{kind}: adaptive {100 * a['acc']:.1f}% > transfer {100 * t['acc']:.1f}%"
              for kind, a, t in (("FGSM-k", pick("FGSM-k adaptive", attacks.STUDY_EPS),
                                  pick("FGSM-k transfer", attacks.STUDY_EPS)),
                                 ("PGD-20", pgd, pick("PGD-20 transfer", HEADLINE_EPS)))
              if a["acc"] > t["ci_high"]]
    checks.append(("adaptive no weaker than transfer", not weaker, "; ".join(weaker) or "ok"))
    return checks


# ---------------------------------------------------------- membership inference

def mia_results(results_dir, protocol):
    """membership_inference.py's rows for this protocol, by (model, attack); {} if it has not run."""
    import csv
    path = Path(results_dir) / f"membership_inference_{protocol}.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {(r["model"], r["attack"]): r for r in csv.DictReader(f)}


def study_mia_accuracy(results_dir, model_name):
    """The study's MIA accuracy with its interval, from the saved decisions."""
    path = Path(results_dir) / "mia" / f"{model_name}_study.npz"
    if not path.exists():
        return None
    saved = np.load(path)
    return core.accuracy_ci(saved["decision"] == saved["is_member"])


# ------------------------------------------------------------------------ tables

def pct(row):
    """'92.2 [91.6, 92.7]' from a row with acc and its interval; '' for none."""
    if not row:
        return ""
    return f"{100 * row['acc']:.1f} [{100 * row['ci_low']:.1f}, {100 * row['ci_high']:.1f}]"


def certified_at(results_dir, defense, radius):
    """Certified accuracy at an L2 radius from certified_robustness.py's log (largest n)."""
    logs = sorted(Path(results_dir, "certify").glob(f"{defense.name}_sigma{defense.sigma:g}_n*.tsv"),
                  key=lambda p: int(p.stem.rsplit("_n", 1)[1]))
    if not defense.sigma or not logs:
        return None
    return cr.certified_accuracy(cr.read_log(logs[-1]), radius)


def summary_row(defense, rows, checks, mia_rows, settings, results_dir):
    fixed = fixed_images(rows)
    mia_cell = lambda attack, key: mia_rows.get((defense.name, attack), {}).get(key, "")  # noqa: E731
    fmt = lambda v: f"{float(v):.3f}" if v != "" else ""  # noqa: E731
    last = long_attack_name(*settings.long_attacks[-1])
    row = {"defense": defense.label, "kind": defense.kind, "model": defense.name,
           "clean (test set)": pct(find(rows, "clean")),
           "FGSM-k transfer": pct(find(rows, "FGSM-k transfer", images=fixed)),
           "FGSM-k adaptive": pct(find(rows, "FGSM-k adaptive", images=fixed)),
           f"PGD-20 @{HEADLINE_EPS:g}": pct(find(rows, "PGD-20", HEADLINE_EPS, fixed)),
           f"{last} @{HEADLINE_EPS:g}": pct(find(rows, last, HEADLINE_EPS, fixed)),
           f"worst case @{HEADLINE_EPS:g}": pct(find(rows, "worst case", HEADLINE_EPS, fixed))}
    for radius in settings.l2_radii:
        row[f"L2 PGD @{radius:g}"] = pct(find(rows, "L2 PGD-20", radius, fixed))
        row[f"certified @{radius:g}"] = pct(certified_at(results_dir, defense, radius))
    row.update({"MIA loss AUC": fmt(mia_cell("loss", "auc")), "LiRA AUC": fmt(mia_cell("lira", "auc")),
                "LiRA TPR@0.1%FPR": fmt(mia_cell("lira", "tpr_at_0.1%_fpr")),
                "study-rule MIA acc": fmt(mia_cell("study", "accuracy")),
                "n (attacks)": find(rows, "benign", images=fixed)["n"],
                "sanity": "ok" if all(p for _, p, _ in checks) else
                          "FLAGGED: " + "; ".join(c for c, p, _ in checks if not p)})
    return row


TABLE4_MEASURES = (  # (our measure, the study's column, which rows of ours)
    ("train accuracy", "train_acc", ("clean (train)", None)),
    ("test accuracy", "test_acc", ("clean", None)),
    ("FGSM-k benign, study's 20", "fgsmk_benign", ("benign", "study's 20")),
    ("FGSM-k adversarial (transfer), study's 20", "fgsmk_adv", ("FGSM-k transfer", "study's 20")),
    ("FGSM-k benign, {fixed}", None, ("benign", "fixed")),
    ("FGSM-k transfer, {fixed}", None, ("FGSM-k transfer", "fixed")),
    ("FGSM-k adaptive, {fixed}", None, ("FGSM-k adaptive", "fixed")),
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
        study = core.STUDY_TABLE4[defense.paper_row]
        for measure, study_key, which in TABLE4_MEASURES:
            ours = None
            if which:
                attack, images = which
                images = fixed_images(rows) if images == "fixed" else images
                ours = find(rows, attack, images=images)
            elif study_key == "mia_acc":
                ours = study_mia_accuracy(results_dir, defense.name)
            study_value = study.get(study_key, "") if study_key else ""
            cell = {"configuration": defense.paper_row, "model": defense.name,
                    "measure": measure.format(fixed=fixed_images(rows)), "study": study_value}
            if study_key == "mia_f1":
                f1 = mia_rows.get((defense.name, "study"), {}).get("f1", "")
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


def markdown_table(path):
    """A written table's Markdown, its '# title' as a bold caption."""
    lines = Path(path).read_text().splitlines()
    if lines and lines[0].startswith("# "):
        lines[0] = f"**{lines[0][2:]}**"
    return "\n".join(lines).strip() + "\n"


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
    core.atomic_write_text(Path(results_dir) / "summary.md", "\n".join(parts))


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

def plot_pareto(evaluated, title, path):
    plt = core.pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    for i, (defense, rows) in enumerate(evaluated):
        clean, robust = find(rows, "clean"), find(rows, "worst case", HEADLINE_EPS)
        ax.errorbar(100 * robust["acc"], 100 * clean["acc"], fmt="os^vD<>p*hX"[i % 11], color=f"C{i % 10}",
                    capsize=2, label=defense.label,
                    xerr=[[100 * (robust["acc"] - robust["ci_low"])], [100 * (robust["ci_high"] - robust["acc"])]],
                    yerr=[[100 * (clean["acc"] - clean["ci_low"])], [100 * (clean["ci_high"] - clean["acc"])]])
    ax.set(xlabel=f"robust accuracy at L-inf eps {HEADLINE_EPS:g}, worst case over every attack (%)",
           ylabel="clean test accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    core.save_figure(fig, path)


def plot_eps(evaluated, settings, title, path):
    plt = core.pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    for i, (defense, rows) in enumerate(evaluated):
        fixed = fixed_images(rows)
        curve = [find(rows, "benign", images=fixed)] + [find(rows, "PGD-20", eps, fixed) for eps in settings.eps_grid]
        eps = [0.0] + list(settings.eps_grid)
        ax.errorbar(eps, [100 * r["acc"] for r in curve], color=f"C{i % 10}", marker="o", ms=3, capsize=2,
                    ls="-" if i < 10 else "--", label=defense.label,
                    yerr=[[100 * (r["acc"] - r["ci_low"]) for r in curve], [100 * (r["ci_high"] - r["acc"]) for r in curve]])
    ax.set(xlabel="L-inf eps (pixels in [0, 1])", ylabel="accuracy under adaptive PGD-20 (%)", ylim=(0, 100),
           title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    core.save_figure(fig, path)


def plot_privacy(evaluated, mia_rows, title, path):
    plt = core.pyplot()
    fig, (ax_auc, ax_tpr) = plt.subplots(1, 2, figsize=(11, 4.5))
    for i, (defense, rows) in enumerate(evaluated):
        robust = 100 * find(rows, "worst case", HEADLINE_EPS)["acc"]
        for ax, attack, key in ((ax_auc, "loss", "auc"), (ax_tpr, "lira", "tpr_at_0.1%_fpr")):
            value = mia_rows.get((defense.name, attack), {}).get(key, "")
            if value != "":
                ax.plot(robust, float(value) * (1 if key == "auc" else 100), "os^vD<>p*hX"[i % 11],
                        color=f"C{i % 10}", label=defense.label)
    ax_auc.axhline(0.5, color="k", ls=":", lw=1)
    ax_auc.set(xlabel=f"robust accuracy at eps {HEADLINE_EPS:g}, worst case (%)",
               ylabel="membership inference ROC AUC (loss attack)", title="leakage on average")
    ax_tpr.axhline(0.1, color="k", ls=":", lw=1)
    ax_tpr.set(xlabel=f"robust accuracy at eps {HEADLINE_EPS:g}, worst case (%)",
               ylabel="LiRA TPR at 0.1% FPR (%)", title="leakage at low FPR (dotted: chance)")
    for ax in (ax_auc, ax_tpr):
        ax.grid(alpha=0.3)
    handles, labels = ax_auc.get_legend_handles_labels()
    if not labels:
        handles, labels = ax_tpr.get_legend_handles_labels()
    if labels:
        fig.legend(handles, labels, fontsize=7, loc="center right")
    else:
        for ax in (ax_auc, ax_tpr):
            ax.text(0.5, 0.5, "no membership_inference.py results yet", ha="center", transform=ax.transAxes)
    fig.suptitle(title)
    core.save_figure(fig, path)


# ------------------------------------------------------------------ run record

def git_state():
    """(commit, whether tracked files differ from it); taken when the run starts, since
    that is the code that produced the results."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                    text=True, cwd=Path(__file__).parent).stdout.strip())
    except OSError:
        commit, dirty = "", None
    return commit, dirty


def run_record(args, settings, evaluated, seconds, git):
    """What produced these results: commit, seed, versions, hardware, wall time."""
    commit, dirty = git
    sidecars = {}
    for defense, _ in evaluated:
        path = core.model_path(args.models_dir, defense.name).with_suffix(".json")
        meta = json.loads(path.read_text()) if path.exists() else {}
        sidecars[defense.name] = {k: meta.get(k) for k in ("seed", "epochs_run", "train_seconds", "saved_at")}
    return {"protocol": args.protocol, "seed": args.seed, "quick": args.quick, "commit": commit,
            "uncommitted_changes": dirty, "settings": dataclasses.asdict(settings),
            "versions": core.library_versions(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "evaluation_wall_seconds": round(seconds, 1), "models": sidecars,
            "finished_at": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


# -------------------------------------------------------------------------- main

def main():
    parser = core.common_parser("Evaluate every defense the same way, with sanity checks; the study's Table 4 "
                                "beside ours under --protocol paper.")
    parser.add_argument("--train-missing", action="store_true",
                        help="train defenses whose model is not cached, through their technique scripts")
    args = core.parse_args(parser)
    protocol = args.protocol_config
    settings = SETTINGS["quick" if args.quick else protocol.name]
    start, git = time.time(), git_state()
    data = core.load_data(protocol, args.data_dir, args.quick)
    defenses = load_defenses(args, catalogue(args, data))
    if not defenses or defenses[0][0].kind != "undefended":
        raise core.UserError(f"no undefended {protocol.architecture} in {args.models_dir}: run model.py "
                             f"--protocol {protocol.name} first, or this script with --train-missing")
    idx = core.attack_subset(len(data.y_test), settings.n_attack)
    study_idx = core.study_sample(len(data.y_test), args.seed) if protocol.name == "paper" else None
    base = defenses[0][1]
    x, y = data.x_test[idx], data.y_test[idx]
    print(f"crafting transfer attacks on the undefended {protocol.architecture} ({len(y)} images)")
    transfer = {"fgsm_k": attacks.fgsm_k(base, x, y),
                "pgd": attacks.pgd(base, x, y, eps=HEADLINE_EPS, steps=20, seed=args.seed)}
    if study_idx is not None:
        transfer["fgsm_k_study"] = attacks.fgsm_k(base, data.x_test[study_idx], data.y_test[study_idx])
    mia_rows = mia_results(args.results_dir, protocol.name)
    evaluated, long_rows, summary, check_rows = [], [], [], []
    for defense, model in defenses:
        t0 = time.time()
        target = Target(model, defense.sigma, settings, args.seed)
        print(f"evaluating {defense.label} ({defense.name}; attacked through: {target.describe()})")
        rows = evaluate(target, data, idx, transfer, settings, args.seed, study_idx)
        checks = sanity_checks(rows, settings)
        evaluated.append((defense, rows))
        common = {"protocol": protocol.name, "defense": defense.label, "kind": defense.kind, "model": defense.name}
        long_rows += [{**common, **r, "attacked_through": target.describe()} for r in rows]
        check_rows.append({**common, **{c: f"{'pass' if p else 'FAIL'} ({d})" for c, p, d in checks}})
        summary.append(summary_row(defense, rows, checks, mia_rows, settings, args.results_dir))
        for r in rows:
            print(f"  {r['attack']:>20} {r['norm']:>4} eps={r['eps']:.4f} {r['images']:>22}: {core.format_acc(r)}")
        failed = [c for c, p, _ in checks if not p]
        print(f"  sanity: {'FLAGGED ' + '; '.join(failed) if failed else 'ok'} ({time.time() - t0:.0f} s)")
    out = args.results_dir / f"evaluation_{protocol.name}"
    tag = f"{protocol.name} protocol, seed {args.seed}"
    core.write_table(long_rows, out, title=f"Uniform evaluation, {tag}: every measurement (exact 95% intervals)")
    core.write_table(check_rows, f"{out}_checks", title=f"Sanity checks (Carlini et al. 2019), {tag}")
    core.write_table(summary, f"{out}_summary",
                     title=f"Every defense at a glance, {tag}: accuracy % [95% interval]; clean on "
                           f"{len(data.y_test)} test images, attacks on {settings.n_attack} fixed test images; MIA "
                           f"from membership_inference.py")
    if protocol.name == "paper":
        table4 = paper_table(evaluated, mia_rows, args.results_dir, settings)
        core.write_table(table4, f"{out}_table4", note=table4_note(table4),
                         title=f"The study's Table 4 (its 20 images) beside ours, {tag}; ours in % with exact 95% "
                               "intervals")
    plot_pareto(evaluated, f"Clean vs robust accuracy, {protocol.name} protocol", f"{out}_pareto.png")
    plot_eps(evaluated, settings, f"Robust accuracy vs eps, {protocol.name} protocol", f"{out}_eps.png")
    plot_privacy(evaluated, mia_rows, f"Privacy vs robustness, {protocol.name} protocol", f"{out}_privacy.png")
    write_summary(args.results_dir)
    record = run_record(args, settings, evaluated, time.time() - start, git)
    core.atomic_write_text(f"{out}_run.json", json.dumps(record, indent=2, default=str) + "\n")
    print(f"wrote {out}.csv, {out}_summary.md, {out}_checks.md, plots, {args.results_dir / 'summary.md'} "
          f"({time.time() - start:.0f} s)")


if __name__ == "__main__":
    core.run_main(main)
