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

from cli import (UserError, check_flags_early, common_parser, existing_file, lazy_type, parse_args, positive_float,
                 run_main)


def build_parser():
    parser = common_parser("Evaluate every defense the same way, with sanity checks; the study's Table 4 "
                           "beside ours under --protocol paper.")
    parser.add_argument("--train-missing", action="store_true",
                        help="train defenses whose model is not cached, through their technique scripts")
    parser.add_argument("--defenses", type=lambda text: [t.strip() for t in text.split(",") if t.strip()],
                        default=None, help="evaluate only these defenses of the catalogue, by label or model key, "
                                           "comma-separated (tables go to evaluation_<protocol>_subset.*)")
    parser.add_argument("--model", type=existing_file, default=None,
                        help="evaluate this Keras file instead (28x28x1 inputs in [0, 1], 10 logits or probabilities)")
    parser.add_argument("--sigma", type=positive_float, default=0.0,
                        help="with --model: judge and attack the smoothed classifier around it at this noise level")
    parser.add_argument("--filter", type=lazy_type("filters", "filter_argument"), default=None,
                        help="with --model: put this input filter in front of it (dual, median3, bits3, ...)")
    return parser


check_flags_early(__name__, build_parser)

import numpy as np  # noqa: E402 (the imports below load TensorFlow: after --help)

import attacks  # noqa: E402
import certified_robustness as cr  # noqa: E402
import filters  # noqa: E402
from data import attack_subset, load_data, study_sample  # noqa: E402
from defenses import Defense, catalogue, load_defenses  # noqa: E402
from evaluation_report import (autoattack_row, draw_figures, find, fixed_images, mia_results, paper_table,
                               summary_row, table4_note, write_digest, write_summary)
from model import keras, library_versions, model_path  # noqa: E402
from outcome_store import model_fingerprint  # noqa: E402
from reporting import Progress, accuracy_ci, atomic_write_text, write_table  # noqa: E402

UNBOUNDED_MAX_ACC = 0.05    # an eps = 1 attack that leaves more than this correct is not working


@dataclasses.dataclass(frozen=True)
class Settings:
    """How hard every defense of a run is attacked: the same for all of them."""
    n_attack: int            # fixed, seeded test images every attack runs on
    n_attack_randomized: int  # the first of them, against a randomized defense (20 draws per gradient)
    eps_grid: tuple          # L-inf budgets of FGSM and PGD-20 (the accuracy-vs-eps curve)
    l2_radii: tuple          # L2 PGD-20 budgets, set beside the certified accuracy
    draws: int               # noise draws per gradient when attacking a smoothed classifier
    n_vote: int              # noise draws behind each PREDICT of a smoothed classifier (alpha 0.001)


SETTINGS = {
    # randomized defenses: the 500 images certified_robustness.py certifies (a 20-draw EOT
    # gradient costs 20 plain ones)
    "standard": Settings(1000, 500, (0.02, 0.05, attacks.STUDY_EPS, 0.1, 0.15), (0.5, 1.0),
                         draws=attacks.EOT_DRAWS, n_vote=cr.PREDICT_N),
    "paper": Settings(1000, 500, (attacks.STUDY_EPS, 0.1), (), draws=attacks.EOT_DRAWS, n_vote=cr.PREDICT_N),
    "quick": Settings(50, 50, (attacks.STUDY_EPS, 0.1), (0.5,), draws=2, n_vote=20),
}


# ------------------------------------------------------ the one evaluation function

def evaluate(target, data, idx, transfer, settings, seed, fgsm_k="FGSM-k", study_idx=None, study_transfer=None):
    """Every measurement of one defense, as rows (attack, norm, eps, images, settings,
    n, acc, ci_low, ci_high): clean accuracy on the test set and on training images,
    attacks.measure on the fixed test images idx (transfer: examples crafted on the
    undefended CNN for them; a randomized defense is attacked on the first
    settings.n_attack_randomized of them), and the study's 20 images where given."""
    if target.randomized and settings.n_attack_randomized < len(idx):
        keep = np.isin(idx, attack_subset(len(data.y_test), settings.n_attack_randomized))
        idx, transfer = idx[keep], [(label, eps, x_adv[keep]) for label, eps, x_adv in transfer]
    x, y = data.x_test[idx], data.y_test[idx]
    rows = []
    attacks.reseed(("evaluate", model_fingerprint(target.model), target.judged_by, seed))   # a randomized judge

    def add(attack, eps, images, correct, settings_text="", norm="linf"):
        rows.append({"attack": attack, "norm": norm, "eps": round(float(eps), 4), "images": images,
                     "settings": settings_text, **accuracy_ci(correct)})

    n_train = min(len(data.y_train), 10000)
    add("clean", 0, "test set", target.judge(data.x_test, data.y_test), norm="-")
    add("clean (train)", 0, f"first {n_train} training", target.judge(data.x_train[:n_train], data.y_train[:n_train]),
        norm="-")
    if study_idx is not None:  # the study's own 20 images, drawn with replacement
        xs, ys = data.x_test[study_idx], data.y_test[study_idx]
        attack = attacks.SUITE[fgsm_k]
        add("benign", 0, "study's 20", target.judge(xs, ys), norm="-")
        add(f"{fgsm_k} transfer", attacks.STUDY_EPS, "study's 20", target.judge(study_transfer, ys),
            "crafted on the undefended CNN")
        add(fgsm_k, attacks.STUDY_EPS, "study's 20", target.outcome(attack, xs, ys, attacks.STUDY_EPS, seed),
            attack.describe())
    plan = attacks.Plan(settings.eps_grid, settings.l2_radii, fgsm_k)
    measured, _ = attacks.measure(target, x, y, plan, seed, transfer)
    fixed = f"{len(y)} fixed"
    rows += [{**r, "attack": "benign" if r["attack"] == "clean" else r["attack"], "images": fixed} for r in measured]
    return rows


# ----------------------------------------------------------------- sanity checks

def beyond_noise(weaker, stronger):
    """The stronger attack leaves fewer images than the weaker by more than half the
    weaker's 95% interval: a difference the interval does not explain."""
    return weaker["acc"] - stronger["acc"] > (weaker["ci_high"] - weaker["ci_low"]) / 2


CHECK_MEANINGS = {  # what a failed check says about the evaluation (Carlini et al. 2019)
    "accuracy falls with eps": "a larger budget left more images: the attack is not finding what exists",
    "unbounded attack reaches ~0%": "an attack allowed to change the whole image still fails: gradients are "
                                    "masked or the attack is broken",
    "PGD no weaker than FGSM": "many steps did worse than one: the gradient misleads (masking)",
    "PGD-20 converged (AutoAttack no stronger beyond noise)": "PGD-20 alone overstates robustness; the worst case, "
                                                             "which includes AutoAttack, does not",
    "black-box no stronger than white-box": "Square found what the gradient attacks missed: gradients are masked",
    "adaptive no weaker than transfer": "the attack through the defense is weaker than one crafted without it: "
                                        "its gradient is unusable (BPDA/EOT needed)",
    "adaptive views complete": "a filter without its BPDA view or a randomized layer without EOT: the adaptive "
                               "attacks are incomplete",
}


def checks_markdown(check_rows):
    """The checks as a reader wants them: one line per defense that fails one, with what
    the failure means, or one sentence that every check passes."""
    failures = [(r["defense"], [(c, v[len("FAIL ("):-1]) for c, v in r.items() if c in CHECK_MEANINGS
                                and v.startswith("FAIL")]) for r in check_rows]
    failures = [(label, failed) for label, failed in failures if failed]
    n_defenses = len(check_rows)
    if not failures:
        return (f"Every check passes for all {n_defenses} defenses ({len(CHECK_MEANINGS)} checks each; "
                "the details are in the CSV).")
    lines = [f"{len(failures)} of {n_defenses} defenses fail a check; every other check passes (details in the "
             "CSV).", ""]
    for label, failed in failures:
        lines.append(f"- **{label}**: " + "; ".join(f"{check} fails ({detail})" for check, detail in failed))
    lines += ["", "What a failure means:", ""]
    lines += [f"- *{check}*: {CHECK_MEANINGS[check]}."
              for check in dict.fromkeys(c for _, failed in failures for c, _ in failed)]
    return "\n".join(lines)


def sanity_checks(rows, settings, missing_views=(), fgsm_k="FGSM-k"):
    """Carlini et al.'s checks of an evaluation, from one defense's rows, and whether
    its adaptive views are complete: a list of (check, passed, detail). Each can fail
    (tests/test_evaluation.py builds a model that fails each one)."""
    fixed = fixed_images(rows)
    pick = lambda attack, eps: find(rows, attack, eps, fixed)  # noqa: E731
    pct1 = lambda r: f"{100 * r['acc']:.1f}%"  # noqa: E731
    checks = []
    curve = [pick("PGD-20", eps) for eps in settings.eps_grid]
    rises = [f"{a['eps']:g}->{b['eps']:g}" for a, b in zip(curve, curve[1:]) if b["acc"] > a["ci_high"]]
    checks.append(("accuracy falls with eps", not rises, "rises at " + ", ".join(rises) if rises else "monotone"))
    unbounded = pick("unbounded PGD-20", 1.0)
    checks.append(("unbounded attack reaches ~0%", unbounded["acc"] <= UNBOUNDED_MAX_ACC,
                   f"{pct1(unbounded)} at eps 1, from the clean image"))
    pgd, fgsm = pick("PGD-20", attacks.HEADLINE_EPS), pick("FGSM", attacks.HEADLINE_EPS)
    checks.append(("PGD no weaker than FGSM", pgd["acc"] <= fgsm["ci_high"], f"PGD-20 {pct1(pgd)} vs FGSM {pct1(fgsm)}"))
    strongest = autoattack_row(rows, fixed)
    checks.append(("PGD-20 converged (AutoAttack no stronger beyond noise)", not beyond_noise(pgd, strongest),
                   f"PGD-20 {pct1(pgd)} vs {strongest['attack']} {pct1(strongest)}"))
    white_box = find(rows, " + ".join(attacks.AUTOATTACK[:-1]), attacks.HEADLINE_EPS, fixed)
    if white_box is None:  # a randomized defense: AutoAttack's rand version has no Square
        checks.append(("black-box no stronger than white-box", True, "not run (randomized defense)"))
    else:  # Square ran after the white-box attacks, on what they left
        checks.append(("black-box no stronger than white-box", not beyond_noise(white_box, strongest),
                       f"{white_box['attack']} {pct1(white_box)}, then Square {pct1(strongest)}"))
    weaker = [f"{kind}: adaptive {pct1(a)} > transfer {pct1(t)}"
              for kind, a, t in ((fgsm_k, pick(fgsm_k, attacks.STUDY_EPS), pick(f"{fgsm_k} transfer", attacks.STUDY_EPS)),
                                 ("PGD-20", pgd, pick("PGD-20 transfer", attacks.HEADLINE_EPS)))
              if t is not None and a["acc"] > t["ci_high"]]
    checks.append(("adaptive no weaker than transfer", not weaker, "; ".join(weaker) or "ok"))
    checks.append(("adaptive views complete", not missing_views, "; ".join(missing_views) or "ok"))
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


def run_record(ctx, settings, evaluated, seconds, git, defense_seconds):
    """What produced these results: commit, seed, versions, hardware, wall times (of
    the whole evaluation and of each defense's attacks)."""
    commit, dirty = git
    sidecars = {}
    for defense, _ in evaluated:
        path = model_path(ctx.models_dir, defense.name).with_suffix(".json")
        meta = json.loads(path.read_text()) if path.exists() else {}
        sidecars[defense.name] = {k: meta.get(k) for k in ("seed", "epochs_run", "train_seconds", "saved_at")}
    return {"protocol": ctx.protocol.name, "seed": ctx.seed, "quick": ctx.quick, "commit": commit,
            "uncommitted_changes": dirty, "settings": dataclasses.asdict(settings),
            "versions": library_versions(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "evaluation_wall_seconds": round(seconds, 1), "seconds_per_defense": defense_seconds,
            "models": sidecars,
            "finished_at": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


# -------------------------------------------------------------------------- main

def evaluate_all(ctx, settings, data, defenses, source):
    """Every defense through evaluate() and the sanity checks, with transfer attacks
    crafted on source (the undefended CNN; None: no transfer rows); returns (defense,
    rows) pairs and the long, summary and checks tables."""
    idx = attack_subset(len(data.y_test), settings.n_attack)
    study_idx = study_sample(len(data.y_test), ctx.seed) if ctx.protocol.name == "paper" else None
    fgsm_k = attacks.fgsm_k_name(ctx.protocol)
    transfer, study_transfer = [], None
    if source is not None:
        print(f"crafting transfer attacks on the undefended {ctx.protocol.architecture} ({len(idx)} images)")
        transfer = attacks.transfer_examples(source, data.x_test[idx], data.y_test[idx], (attacks.HEADLINE_EPS,),
                                             fgsm_k, ctx.seed)
    if source is not None and study_idx is not None:
        study_transfer = attacks.SUITE[fgsm_k].run(source, data.x_test[study_idx], data.y_test[study_idx],
                                                   attacks.STUDY_EPS, ctx.seed)
    else:
        study_idx = None
    mia_rows = mia_results(ctx.results_dir, ctx.protocol.name)
    evaluated, long_rows, summary, check_rows, seconds = [], [], [], [], {}
    progress = Progress(len(defenses), "evaluation", "defenses", every=0)
    for defense, model in defenses:
        t0 = time.time()
        target = defense.target(model, settings.n_vote, settings.draws, ctx.seed)
        print(f"evaluating {defense.label} ({defense.key}; attacked through: {target.describe()})")
        rows = evaluate(target, data, idx, transfer, settings, ctx.seed, fgsm_k, study_idx, study_transfer)
        checks = sanity_checks(rows, settings, target.missing_adaptive_views(), fgsm_k)
        evaluated.append((defense, rows))
        common = {"protocol": ctx.protocol.name, "defense": defense.label, "kind": defense.kind, "model": defense.key}
        long_rows += [{**common, **r, "attacked_through": target.describe(), "judged_by": target.judged_by}
                      for r in rows]
        check_rows.append({**common, **{c: f"{'pass' if p else 'FAIL'} ({d})" for c, p, d in checks}})
        summary.append(summary_row(defense, rows, checks, mia_rows, settings, ctx.results_dir))
        failed = [c for c, p, _ in checks if not p]
        seconds[defense.key] = round(time.time() - t0, 1)
        print(f"  sanity: {'FLAGGED ' + '; '.join(failed) if failed else 'ok'} ({seconds[defense.key]:.0f} s)")
        progress.update(len(evaluated))
    return evaluated, long_rows, summary, check_rows, seconds


def pick_defenses(defenses, wanted):
    """The catalogue's defenses named in wanted (labels or model keys), in its order."""
    names = {d.label for d in defenses} | {d.key for d in defenses}
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise UserError(f"--defenses: unknown {', '.join(map(repr, unknown))}; the protocol's defenses are: "
                        + ", ".join(d.label for d in defenses))
    return [d for d in defenses if d.label in wanted or d.key in wanted]


def load_user_model(path):
    """A Keras classifier of 28x28x1 images in [0, 1] with 10 outputs, as a model that
    outputs logits, and whether the file's model outputs logits or probabilities."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--model {path}: no such file")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001 -- any file Keras cannot read is the user's to fix
        raise UserError(f"--model {path}: not a model Keras can load ({type(e).__name__})") from None
    inputs, outputs = tuple(getattr(model, "input_shape", ())[1:]), getattr(model, "output_shape", (None,))[-1]
    if inputs != (28, 28, 1) or outputs != 10:
        raise UserError(f"--model {path}: needs 28x28x1 inputs and 10 outputs, has {inputs} -> {outputs}")
    probe = np.asarray(model(np.random.default_rng(0).uniform(size=(16, 28, 28, 1)).astype(np.float32)))
    if probe.min() >= 0 and np.allclose(probe.sum(axis=1), 1, atol=1e-3):
        logits = keras.layers.Lambda(lambda p: keras.ops.log(p + 1e-12), name="log")
        return keras.Sequential([keras.Input((28, 28, 1)), model, logits], name=path.stem), "probabilities"
    return model, "logits"


def user_defense(path, sigma, filter_name):
    """(Defense, model) for a model file given on the command line."""
    model, outputs = load_user_model(path)
    label = f"{Path(path).name} ({outputs}" + (f", {filter_name} filter" if filter_name else "") + \
        (f", smoothed sigma {sigma:g}" if sigma else "") + ")"
    defense = Defense(label, "your model", Path(path).stem, train=None, filter=filter_name or "", sigma=sigma or 0.0)
    if filter_name:
        model = filters.with_filter(filters.make_filter(filter_name), model)
    return defense, model


def run_evaluation(ctx, train_missing=False, wanted=None, user_model=None, sigma=0.0, filter_name=""):
    """Evaluate every defense of the protocol (those named in wanted; or the model file
    user_model); write the tables, plots and run record."""
    protocol = ctx.protocol
    settings = SETTINGS["quick" if ctx.quick else protocol.name]
    start, git = time.time(), git_state()
    data = load_data(protocol, ctx.data_dir, ctx.quick)
    every = catalogue(ctx, data)
    if user_model:
        base = load_defenses(ctx.models_dir, every[:1])
        evaluated, long_rows, _, check_rows, _ = evaluate_all(ctx, settings, data, [user_defense(user_model, sigma,
                                                                                             filter_name)],
                                                           base[0][1] if base else None)
        # a folder of its own: a user's model never writes over a run's tables
        out = ctx.results_dir / "your_models" / f"evaluation_{Path(user_model).stem}"
        out.parent.mkdir(parents=True, exist_ok=True)
        write_table(long_rows, out, title=f"{evaluated[0][0].label}, evaluated like every defense of the "
                    f"{protocol.name} protocol (seed {ctx.seed}; exact 95% intervals)")
        write_table(check_rows, f"{out}_checks", title=f"Sanity checks (Carlini et al. 2019) of {user_model}",
                    markdown_body=checks_markdown(check_rows))
        print(f"wrote {out}.csv, {out}.md, {out}_checks.md ({time.time() - start:.0f} s)")
        return
    defenses = load_defenses(ctx.models_dir, pick_defenses(every, wanted) if wanted else every, train_missing)
    source = load_defenses(ctx.models_dir, every[:1])
    if not source:
        raise UserError(f"no undefended {protocol.architecture} in {ctx.models_dir}: run model.py "
                        f"--protocol {protocol.name} first, or this script with --train-missing")
    evaluated, long_rows, summary, check_rows, seconds = evaluate_all(ctx, settings, data, defenses, source[0][1])
    out = ctx.results_dir / (f"evaluation_{protocol.name}" + ("_subset" if wanted else ""))
    tag = f"{protocol.name} protocol, seed {ctx.seed}"
    write_table(long_rows, out, title=f"Uniform evaluation, {tag}: every measurement (exact 95% intervals)")
    write_table(check_rows, f"{out}_checks", title=f"Sanity checks (Carlini et al. 2019), {tag}",
                    markdown_body=checks_markdown(check_rows))
    write_table(summary, f"{out}_summary",
                title=f"Every defense at a glance, {tag}: accuracy % [95% interval]; clean on "
                      f"{len(data.y_test)} test images, attacks on {settings.n_attack} fixed test images "
                      f"({settings.n_attack_randomized} of them for randomized defenses; smoothed classifiers "
                      f"judged by PREDICT, n {settings.n_vote:,}, alpha {cr.PREDICT_ALPHA:g}; settings "
                      f"of each in {out.name}.csv); MIA from membership_inference.py")
    mia_rows = mia_results(ctx.results_dir, protocol.name)
    if protocol.name == "paper":
        table4 = paper_table(evaluated, mia_rows, ctx.results_dir, settings)
        write_table(table4, f"{out}_table4", note=table4_note(table4),
                    title=f"The study's Table 4 (its 20 images) beside ours, {tag}; ours in % with exact 95% "
                          "intervals")
    draw_figures(evaluated, settings.eps_grid, mia_rows, protocol.name, out)
    write_summary(ctx.results_dir)
    write_digest(ctx.results_dir)
    record = run_record(ctx, settings, evaluated, time.time() - start, git, seconds)
    atomic_write_text(f"{out}_run.json", json.dumps(record, indent=2, default=str) + "\n")
    print(f"wrote {out}.csv, {out}_summary.md, {out}_checks.md, plots, {ctx.results_dir / 'summary.md'} "
          f"({time.time() - start:.0f} s)")


def main():
    parser = build_parser()
    args, ctx = parse_args(parser)
    attacks.remember_outcomes(ctx.results_dir / ".outcomes")
    if (args.sigma or args.filter) and not args.model:
        raise UserError("--sigma and --filter apply to --model only")
    run_evaluation(ctx, args.train_missing, args.defenses, args.model, args.sigma, args.filter)


if __name__ == "__main__":
    run_main(main)
