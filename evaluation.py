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
from cli import UserError, common_parser, parse_args, run_main
from data import attack_subset, load_data, study_sample
from defenses import catalogue, load_defenses
from evaluation_report import (find, fixed_images, mia_results, paper_table, plot_eps, plot_pareto, plot_privacy,
                               summary_row, table4_note, write_digest, write_summary)
from model import library_versions, model_path
from reporting import Progress, accuracy_ci, atomic_write_text, format_acc, write_table

UNBOUNDED_MAX_ACC = 0.05    # an eps = 1 attack that leaves more than this correct is not working


@dataclasses.dataclass(frozen=True)
class Settings:
    """How hard every defense of a run is attacked: the same for all of them."""
    n_attack: int            # fixed, seeded test images every attack runs on
    eps_grid: tuple          # L-inf budgets of PGD-20 (the accuracy-vs-eps curve)
    long_attacks: tuple      # (steps, restarts) of the stronger PGD runs at attacks.HEADLINE_EPS, in order
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


# ------------------------------------------------------ the one evaluation function

def evaluate(target, data, idx, transfer, settings, seed, study_idx=None, fgsm_k_loss="ce"):
    """Every measurement of one defense, as rows (attack, norm, eps, images, n, acc,
    ci_low, ci_high). Attacks run on the test images idx; transfer holds FGSM-k and
    PGD-20 examples crafted on the undefended CNN for those images."""
    x, y = data.x_test[idx], data.y_test[idx]
    rows = []

    def pgd(**options):
        return target.worst_case(lambda view, eot: attacks.pgd(view, x, y, eot_samples=eot, seed=seed, **options), y)

    def fgsm_k(xs, ys):
        return target.worst_case(lambda view, eot: attacks.fgsm_k(view, xs, ys, loss=fgsm_k_loss), ys)

    def add(attack, norm, eps, images, correct):
        rows.append({"attack": attack, "norm": norm, "eps": round(float(eps), 4), "images": images,
                     **accuracy_ci(correct)})
        return correct

    n_train = min(len(data.y_train), 10000)
    add("clean", "-", 0, "test set", target.judge(data.x_test, data.y_test))
    add("clean (train)", "-", 0, f"first {n_train} training", target.judge(data.x_train[:n_train],
                                                                             data.y_train[:n_train]))
    if study_idx is not None:  # the study's own 20 images, drawn with replacement
        xs, ys = data.x_test[study_idx], data.y_test[study_idx]
        add("benign", "-", 0, "study's 20", target.judge(xs, ys))
        add("FGSM-k transfer", "linf", attacks.STUDY_EPS, "study's 20", target.judge(transfer["fgsm_k_study"], ys))
        add("FGSM-k adaptive", "linf", attacks.STUDY_EPS, "study's 20", fgsm_k(xs, ys))
    fixed = f"{len(y)} fixed"
    add("benign", "-", 0, fixed, target.judge(x, y))
    add("FGSM-k transfer", "linf", attacks.STUDY_EPS, fixed, target.judge(transfer["fgsm_k"], y))
    add("FGSM-k adaptive", "linf", attacks.STUDY_EPS, fixed, fgsm_k(x, y))
    at_headline = [add("FGSM", "linf", attacks.HEADLINE_EPS, fixed,
                       pgd(eps=attacks.HEADLINE_EPS, steps=1, step_size=attacks.HEADLINE_EPS, random_start=False))]
    at_headline.append(add("PGD-20 transfer", "linf", attacks.HEADLINE_EPS, fixed, target.judge(transfer["pgd"], y)))
    for eps in settings.eps_grid:
        correct = add("PGD-20", "linf", eps, fixed, pgd(eps=eps, steps=20))
        if eps == attacks.HEADLINE_EPS:
            at_headline.append(correct)
    for steps, restarts in settings.long_attacks:
        at_headline.append(add(attacks.pgd_name(steps, restarts), "linf", attacks.HEADLINE_EPS, fixed,
                               pgd(eps=attacks.HEADLINE_EPS, steps=steps, restarts=restarts)))
    add("worst case", "linf", attacks.HEADLINE_EPS, fixed, np.logical_and.reduce(at_headline))
    add("unbounded PGD-20", "linf", 1.0, fixed, pgd(eps=1.0, steps=20))
    for radius in settings.l2_radii:
        add("L2 PGD-20", "l2", radius, fixed, pgd(eps=radius, norm="l2", steps=20, step_size=radius / 8))
    return rows


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
    pgd, fgsm = pick("PGD-20", attacks.HEADLINE_EPS), pick("FGSM", attacks.HEADLINE_EPS)
    checks.append(("PGD no weaker than FGSM", pgd["acc"] <= fgsm["ci_high"],
                   f"PGD-20 {100 * pgd['acc']:.1f}% vs FGSM {100 * fgsm['acc']:.1f}%"))
    chain = [pgd] + [pick(attacks.pgd_name(*a), attacks.HEADLINE_EPS) for a in settings.long_attacks]
    shifts = [(a, b) for a, b in zip(chain, chain[1:]) if abs(a["acc"] - b["acc"]) > (a["ci_high"] - a["ci_low"]) / 2]
    checks.append(("more steps/restarts change little", not shifts,
                   "; ".join(f"{a['attack']} {100 * a['acc']:.1f}% -> {b['attack']} {100 * b['acc']:.1f}%"
                             for a, b in shifts) or "converged"))
    weaker = [f"{kind}: adaptive {100 * a['acc']:.1f}% > transfer {100 * t['acc']:.1f}%"
              for kind, a, t in (("FGSM-k", pick("FGSM-k adaptive", attacks.STUDY_EPS),
                                  pick("FGSM-k transfer", attacks.STUDY_EPS)),
                                 ("PGD-20", pgd, pick("PGD-20 transfer", attacks.HEADLINE_EPS)))
              if a["acc"] > t["ci_high"]]
    checks.append(("adaptive no weaker than transfer", not weaker, "; ".join(weaker) or "ok"))
    return checks


# ------------------------------------------------------------------ run record

def git_state():
    """(commit, whether tracked code differs from it); taken when the run starts, since
    that is the code that produced the results. Changes under results/ are outputs, not
    code, and do not count."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                     ":(exclude)results"], capture_output=True, text=True,
                                    cwd=Path(__file__).parent).stdout.strip())
    except OSError:
        commit, dirty = "", None
    return commit, dirty


def run_record(ctx, settings, evaluated, seconds, git):
    """What produced these results: commit, seed, versions, hardware, wall time."""
    commit, dirty = git
    sidecars = {}
    for defense, _ in evaluated:
        path = model_path(ctx.models_dir, defense.name).with_suffix(".json")
        meta = json.loads(path.read_text()) if path.exists() else {}
        sidecars[defense.name] = {k: meta.get(k) for k in ("seed", "epochs_run", "train_seconds", "saved_at")}
    return {"protocol": ctx.protocol.name, "seed": ctx.seed, "quick": ctx.quick, "commit": commit,
            "uncommitted_changes": dirty, "settings": dataclasses.asdict(settings),
            "versions": library_versions(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "evaluation_wall_seconds": round(seconds, 1), "models": sidecars,
            "finished_at": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


# -------------------------------------------------------------------------- main

def transfer_examples(base, data, idx, study_idx, seed, fgsm_k_loss):
    """FGSM-k and PGD-20 examples crafted on the undefended CNN, to transfer."""
    x, y = data.x_test[idx], data.y_test[idx]
    transfer = {"fgsm_k": attacks.fgsm_k(base, x, y, loss=fgsm_k_loss),
                "pgd": attacks.pgd(base, x, y, eps=attacks.HEADLINE_EPS, steps=20, seed=seed)}
    if study_idx is not None:
        transfer["fgsm_k_study"] = attacks.fgsm_k(base, data.x_test[study_idx], data.y_test[study_idx],
                                                  loss=fgsm_k_loss)
    return transfer


def evaluate_all(ctx, settings, data, defenses):
    """Every defense through evaluate() and the sanity checks; returns (defense, rows)
    pairs and the long, summary and checks tables."""
    idx = attack_subset(len(data.y_test), settings.n_attack)
    study_idx = study_sample(len(data.y_test), ctx.seed) if ctx.protocol.name == "paper" else None
    print(f"crafting transfer attacks on the undefended {ctx.protocol.architecture} ({len(idx)} images)")
    loss = ctx.protocol.fgsm_k_loss
    transfer = transfer_examples(defenses[0][1], data, idx, study_idx, ctx.seed, loss)
    mia_rows = mia_results(ctx.results_dir, ctx.protocol.name)
    evaluated, long_rows, summary, check_rows = [], [], [], []
    progress = Progress(len(defenses), "evaluation", "defenses", every=0)
    for defense, model in defenses:
        t0 = time.time()
        target = defense.target(model, settings.n_vote, settings.eot, ctx.seed)
        print(f"evaluating {defense.label} ({defense.key}; attacked through: {target.describe()})")
        rows = evaluate(target, data, idx, transfer, settings, ctx.seed, study_idx, loss)
        checks = sanity_checks(rows, settings)
        evaluated.append((defense, rows))
        common = {"protocol": ctx.protocol.name, "defense": defense.label, "kind": defense.kind, "model": defense.key}
        long_rows += [{**common, **r, "attacked_through": target.describe()} for r in rows]
        check_rows.append({**common, **{c: f"{'pass' if p else 'FAIL'} ({d})" for c, p, d in checks}})
        summary.append(summary_row(defense, rows, checks, mia_rows, settings, ctx.results_dir))
        for r in rows:
            print(f"  {r['attack']:>20} {r['norm']:>4} eps={r['eps']:.4f} {r['images']:>22}: {format_acc(r)}")
        failed = [c for c, p, _ in checks if not p]
        print(f"  sanity: {'FLAGGED ' + '; '.join(failed) if failed else 'ok'} ({time.time() - t0:.0f} s)")
        progress.update(len(evaluated))
    return evaluated, long_rows, summary, check_rows


def run_evaluation(ctx, train_missing=False):
    """Evaluate every defense of the protocol; write the tables, plots and run record."""
    protocol = ctx.protocol
    settings = SETTINGS["quick" if ctx.quick else protocol.name]
    start, git = time.time(), git_state()
    data = load_data(protocol, ctx.data_dir, ctx.quick)
    defenses = load_defenses(ctx.models_dir, catalogue(ctx, data), train_missing)
    if not defenses or defenses[0][0].kind != "undefended":
        raise UserError(f"no undefended {protocol.architecture} in {ctx.models_dir}: run model.py "
                        f"--protocol {protocol.name} first, or this script with --train-missing")
    evaluated, long_rows, summary, check_rows = evaluate_all(ctx, settings, data, defenses)
    out = ctx.results_dir / f"evaluation_{protocol.name}"
    tag = f"{protocol.name} protocol, seed {ctx.seed}"
    write_table(long_rows, out, title=f"Uniform evaluation, {tag}: every measurement (exact 95% intervals)")
    write_table(check_rows, f"{out}_checks", title=f"Sanity checks (Carlini et al. 2019), {tag}")
    write_table(summary, f"{out}_summary",
                title=f"Every defense at a glance, {tag}: accuracy % [95% interval]; clean on "
                      f"{len(data.y_test)} test images, attacks on {settings.n_attack} fixed test images; FGSM-k "
                      f"ascends the {attacks.LOSSES[protocol.fgsm_k_loss]}, every other attack the "
                      f"{attacks.LOSSES['ce']}; MIA from membership_inference.py")
    mia_rows = mia_results(ctx.results_dir, protocol.name)
    if protocol.name == "paper":
        table4 = paper_table(evaluated, mia_rows, ctx.results_dir, settings)
        write_table(table4, f"{out}_table4", note=table4_note(table4),
                    title=f"The study's Table 4 (its 20 images) beside ours, {tag}; ours in % with exact 95% "
                          "intervals")
    plot_pareto(evaluated, f"Clean vs robust accuracy, {protocol.name} protocol", f"{out}_pareto.png")
    plot_eps(evaluated, settings, f"Robust accuracy vs eps, {protocol.name} protocol", f"{out}_eps.png")
    plot_privacy(evaluated, mia_rows, f"Privacy vs robustness, {protocol.name} protocol", f"{out}_privacy.png")
    write_summary(ctx.results_dir)
    write_digest(ctx.results_dir)
    record = run_record(ctx, settings, evaluated, time.time() - start, git)
    atomic_write_text(f"{out}_run.json", json.dumps(record, indent=2, default=str) + "\n")
    print(f"wrote {out}.csv, {out}_summary.md, {out}_checks.md, plots, {ctx.results_dir / 'summary.md'} "
          f"({time.time() - start:.0f} s)")


def main():
    parser = common_parser("Evaluate every defense the same way, with sanity checks; the study's Table 4 "
                           "beside ours under --protocol paper.")
    parser.add_argument("--train-missing", action="store_true",
                        help="train defenses whose model is not cached, through their technique scripts")
    args, ctx = parse_args(parser)
    run_evaluation(ctx, args.train_missing)


if __name__ == "__main__":
    run_main(main)
