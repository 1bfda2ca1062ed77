"""The adversarial-training experiments: the study's five Table 4 rows (paper
protocol) and FGSM, FGSM-RS, PGD, TRADES and PGD behind the dual filter compared
(standard protocol), each model attacked through every view of it. The recipes and
the trainer are in adversarial_training.py.

    python runtime_adversarial_training.py [--protocol standard|paper] [--quick] [--retrain]
    python runtime_adversarial_training.py --method pgd --eps 0.1 --epochs 10 [--filter dual] [--init NAME]
"""
from cli import check_flags_early, common_parser, lazy_type, parse_args, positive_float, positive_int, run_main
from recipes import METHODS, PAPER_ROWS, STANDARD_RECIPES, Recipe

RECIPE_FLAGS = ("eps", "epochs", "batch_size", "steps", "clean_weight", "beta", "filter", "init")


def build_parser():
    default = Recipe("pgd")
    parser = common_parser("Adversarial training with examples generated per batch: the study's "
                           "version and the methods an expert compares it with.")
    parser.add_argument("--method", choices=METHODS, default=None,
                        help="train and evaluate one recipe (default: the protocol's whole experiment)")
    parser.add_argument("--retrain", action="store_true", help="train again even if the model is cached")
    recipe = parser.add_argument_group("the recipe of --method (only with --method)")
    recipe.add_argument("--eps", type=positive_float, help=f"L-inf training budget (default: {default.eps:g})")
    recipe.add_argument("--epochs", type=positive_int, help=f"training epochs (default: {default.epochs})")
    recipe.add_argument("--batch-size", type=positive_int, help=f"batch size (default: {default.batch_size})")
    recipe.add_argument("--steps", type=positive_int, help=f"PGD/TRADES inner steps (default: {default.steps})")
    recipe.add_argument("--clean-weight", type=float,
                        help="fgsm/pgd: weight of the clean loss, 0..1 (default: 0, adversarial only)")
    recipe.add_argument("--beta", type=positive_float, help=f"TRADES trade-off (default: {default.beta:g})")
    recipe.add_argument("--filter", type=lazy_type("filters", "filter_argument"),
                        help="input filter in front, e.g. dual (default: none)")
    recipe.add_argument("--init", help="fine-tune this model from --models-dir, name without .keras "
                                       "(default: a fresh CNN; the study's method fine-tunes the base CNN)")
    return parser


check_flags_early(__name__, build_parser)

import attacks  # noqa: E402 (the imports below load TensorFlow: after --help)
import filters  # noqa: E402
from adversarial_training import monitor_images, paper_model, train_adversarially, train_paper  # noqa: E402
from data import STUDY_TABLE4, attack_subset, load_data, paper_samples  # noqa: E402
from model import get_base_model, predict_labels  # noqa: E402
from reporting import accuracy_ci, error_bars, format_acc, pyplot, save_figure, write_table  # noqa: E402


def acc_row(**fields):
    correct = fields.pop("correct")
    return {**fields, **accuracy_ci(correct)}


def paper_rows(ctx, data, key, samples, transfer):
    """One study row's measures: train and test accuracy, and on each image sample the
    benign accuracy, the transferred and the adaptive FGSM-k (the study's loss); the
    study's figures beside."""
    model, name, sidecar = paper_model(ctx, key, data)
    study = STUDY_TABLE4[key]
    fgsm_k = attacks.SUITE[attacks.fgsm_k_name(ctx.protocol)]
    common = dict(protocol="paper", configuration=key, model=name, filter_at_prediction=PAPER_ROWS[key][1] or "none",
                  perturbation_linf=round(sidecar.get("study_perturbation", {}).get("linf_max", float("nan")), 4))
    rows = [acc_row(**common, measure="train accuracy", eps=0.0, study=study["train_acc"],
                    correct=predict_labels(model, data.x_train) == data.y_train),
            acc_row(**common, measure="test accuracy", eps=0.0, study=study["test_acc"],
                    correct=predict_labels(model, data.x_test) == data.y_test)]
    target = filters.target(model)
    for sample in samples:
        x, y = data.x_test[sample.indices], data.y_test[sample.indices]
        rows.append(acc_row(**common, measure=f"FGSM-k benign, {sample.label}", eps=0.0,
                            study=study["fgsmk_benign"] if sample.is_study else "",
                            correct=predict_labels(model, x) == y))
        rows.append(acc_row(**common, measure=f"FGSM-k transfer, {sample.label}", eps=round(attacks.STUDY_EPS, 4),
                            study=study["fgsmk_adv"] if sample.is_study else "",
                            correct=predict_labels(model, transfer[sample.label]) == y))
        rows.append(acc_row(**common, measure=f"FGSM-k adaptive, {sample.label}", eps=round(attacks.STUDY_EPS, 4),
                            study="", correct=target.outcome(fgsm_k, x, y, attacks.STUDY_EPS, ctx.seed)))
    return rows


def evaluate_paper(ctx, data, retrain=False):
    """The study's five adversarial-training rows, each beside its figures."""
    base, _ = get_base_model(ctx, data)
    logs = train_paper(ctx, data, retrain)
    samples = paper_samples(len(data.y_test), 100 if ctx.quick else ctx.protocol.n_attack, ctx.seed)
    fgsm_k = attacks.SUITE[attacks.fgsm_k_name(ctx.protocol)]
    transfer = {s.label: fgsm_k.run(base, data.x_test[s.indices], data.y_test[s.indices], attacks.STUDY_EPS, ctx.seed)
                for s in samples}
    rows = []
    for key in PAPER_ROWS:
        rows += paper_rows(ctx, data, key, samples, transfer)
        for r in rows[-8:]:
            print(f"  {r['measure']:>40}: {format_acc(r)}  study: {r['study']}")
    return rows, logs


def evaluate_standard(ctx, data, recipes, retrain=False):
    """Clean accuracy and FGSM, PGD-20 and APGD-CE of the suite at eps 0.1 (through
    every attack view of the model) of each recipe's model; AutoAttack and the worst
    case are evaluation.py's."""
    n = 200 if ctx.quick else ctx.protocol.n_attack
    idx = attack_subset(len(data.y_test), n)
    x, y = data.x_test[idx], data.y_test[idx]
    rows, logs = [], {}
    for recipe in recipes:
        model, sidecar = train_adversarially(ctx, recipe, data, retrain)
        name = recipe.name(ctx.protocol.architecture)
        logs[recipe.label()] = sidecar.get("epoch_log", [])
        common = dict(protocol="standard", model=name, method=recipe.method, filter=recipe.filter or "none",
                      train_eps=recipe.eps, seconds_per_epoch=sidecar.get("seconds_per_epoch"),
                      collapsed_at_epoch=sidecar.get("collapsed_at_epoch") or "")
        rows.append(acc_row(**common, attack="clean", eps=0.0, settings="whole test set",
                            correct=predict_labels(model, data.x_test) == data.y_test))
        target = filters.target(model)
        for attack in ("FGSM", "PGD-20", "APGD-CE"):
            correct = target.outcome(attacks.SUITE[attack], x, y, attacks.HEADLINE_EPS, ctx.seed)
            rows.append(acc_row(**common, attack=attack, eps=attacks.HEADLINE_EPS, correct=correct,
                                settings=attacks.SUITE[attack].describe(attacks.HEADLINE_EPS)))
        for r in rows[-4:]:
            print(f"  {name:>40} {r['attack']:>12}: {format_acc(r)}")
    return rows, logs


EPOCHS_TITLE = "Adversarial training per epoch ({} protocol)"


def epoch_rows(logs, images):
    """The epoch logs of every recipe as table rows (results/..._epochs.csv)."""
    return [{"recipe": label, "epoch": e["epoch"], "held_out_images": images, "clean_acc": e["clean_acc"],
             "pgd10_eps": e.get("pgd_eps", ""), "pgd10_acc": e["pgd_acc"], "loss": e.get("loss", ""),
             "seconds": e.get("seconds", "")}
            for label, log in logs.items() for e in log]


def plot_epoch_logs(rows, title, path):
    """Clean and PGD-10 accuracy of the held-out images after every epoch, one line per
    recipe (rows as epoch_rows makes them, or back from their CSV)."""
    plt = pyplot()
    fig, (ax_clean, ax_pgd) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True, layout="constrained")
    for label in dict.fromkeys(r["recipe"] for r in rows):
        log = [r for r in rows if r["recipe"] == label]
        epochs = [int(r["epoch"]) for r in log]
        line, = ax_clean.plot(epochs, [100 * float(r["clean_acc"]) for r in log], "o-", ms=3, label=label)
        ax_pgd.plot(epochs, [100 * float(r["pgd10_acc"]) for r in log], "o-", ms=3, color=line.get_color())
    images = rows[0]["held_out_images"] if rows else ""
    budgets = {str(r.get("pgd10_eps", "")) for r in rows}
    at = f" at L-inf {float(budgets.pop()):g}" if len(budgets) == 1 and "" not in budgets else ""
    ax_clean.set(title=f"clean accuracy, {images} held-out images", xlabel="epoch", ylabel="accuracy (%)")
    ax_pgd.set(title=f"PGD-10 accuracy{at}, same images", xlabel="epoch")
    for ax in (ax_clean, ax_pgd):
        ax.grid(alpha=0.3)
    ax_clean.legend(fontsize=7)
    fig.suptitle(title)
    save_figure(fig, path)


CLEAN_VS_ROBUST = ("APGD-CE", "Clean vs robust accuracy per method")   # the attack on its x axis, its title


def plot_clean_vs_robust(rows, robust_attack, title, path):
    """Each adversarially trained model's clean accuracy against its accuracy under
    robust_attack at eps 0.1, with both intervals; labelled by recipe."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name in dict.fromkeys(r["model"] for r in rows):
        clean = next(r for r in rows if r["model"] == name and r["attack"] == "clean")
        robust = next(r for r in rows if r["model"] == name and r["attack"] == robust_attack)
        label = Recipe(clean["method"], filter="" if clean["filter"] == "none" else clean["filter"]).label()
        ax.errorbar(100 * robust["acc"], 100 * clean["acc"], fmt="o", capsize=2, label=label,
                    xerr=error_bars([robust]), yerr=error_bars([clean]))
    ax.set(xlabel=f"{robust_attack} accuracy at eps 0.1 (%)", ylabel="clean test accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    save_figure(fig, path)


def write_results(ctx, rows, logs, stem, clean_vs_robust):
    """The epoch logs and the plots, then the table (last: make takes it as the stage's end)."""
    epochs = epoch_rows(logs, monitor_images(ctx.quick))
    write_table(epochs, f"{stem}_epochs", title="Clean and PGD-10 accuracy of held-out images after every epoch of "
                                               "training")
    plot_epoch_logs(epochs, EPOCHS_TITLE.format(ctx.protocol.name), f"{stem}_epochs.png")
    if clean_vs_robust:
        plot_clean_vs_robust(rows, *CLEAN_VS_ROBUST, f"{stem}_clean_vs_robust.png")
    write_table(rows, stem, title=f"Adversarial training, {ctx.protocol.name} protocol, seed {ctx.seed} "
                                  "(exact 95% intervals)")
    print(f"wrote {stem}.csv, {stem}.md, {stem}_epochs.csv and plots")


def run_recipe(ctx, recipe, retrain=False):
    """Train and evaluate one recipe, into its own table."""
    data = load_data(ctx.protocol, ctx.data_dir, ctx.quick)
    recipe = recipe.for_run(ctx.quick)
    rows, logs = evaluate_standard(ctx, data, [recipe], retrain)
    write_results(ctx, rows, logs, ctx.results_dir / f"adversarial_training_{recipe.name(ctx.protocol.architecture)}",
                  clean_vs_robust=True)


def run_paper(ctx, retrain=False):
    """The study's five adversarial-training rows of its Table 4."""
    data = load_data(ctx.protocol, ctx.data_dir, ctx.quick)
    rows, logs = evaluate_paper(ctx, data, retrain)
    write_results(ctx, rows, logs, ctx.results_dir / "adversarial_training_paper", clean_vs_robust=False)


def run_standard(ctx, retrain=False):
    """FGSM, FGSM-RS, PGD, TRADES and dual + PGD training at eps 0.1, compared."""
    data = load_data(ctx.protocol, ctx.data_dir, ctx.quick)
    recipes = [Recipe("fgsm"), Recipe("pgd")] if ctx.quick else STANDARD_RECIPES
    rows, logs = evaluate_standard(ctx, data, [recipe.for_run(ctx.quick) for recipe in recipes], retrain)
    write_results(ctx, rows, logs, ctx.results_dir / "adversarial_training_standard", clean_vs_robust=True)


def main():
    parser = build_parser()
    args, ctx = parse_args(parser)
    attacks.remember_outcomes(ctx.results_dir / ".outcomes")
    given = {flag: getattr(args, flag) for flag in RECIPE_FLAGS if getattr(args, flag) is not None}
    if given and not args.method:
        parser.error(f"--{next(iter(given)).replace('_', '-')} sets a recipe: it needs --method")
    if not 0 <= given.get("clean_weight", 0) <= 1:
        parser.error(f"--clean-weight must be in 0..1, got {given['clean_weight']}")
    if args.method:
        run_recipe(ctx, Recipe(args.method, **given), args.retrain)
    elif ctx.protocol.name == "paper":
        run_paper(ctx, args.retrain)
    else:
        run_standard(ctx, args.retrain)


if __name__ == "__main__":
    run_main(main)
