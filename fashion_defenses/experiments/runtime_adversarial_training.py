"""The adversarial-training stage (what runtime_adversarial_training.py runs): the
study's five Table 4 rows (paper protocol) and FGSM, FGSM-RS, PGD, TRADES and PGD behind
the dual filter compared (standard protocol), each model attacked through every view of
it. The recipes and the trainer are in defenses/recipes.py and
defenses/adversarial_training.py."""
from fashion_defenses.attacks import suite
from fashion_defenses.data import STUDY_EPS, STUDY_TABLE4, attack_subset, load_data, paper_samples
from fashion_defenses.defenses import filters
from fashion_defenses.defenses.adversarial_training import monitor_images, paper_model, train_adversarially, train_paper
from fashion_defenses.defenses.recipes import PAPER_ROWS, STANDARD_RECIPES, Recipe
from fashion_defenses.models import get_base_model, predict_labels
from fashion_defenses.reporting import accuracy_ci, error_bars, format_acc, pyplot, save_figure, write_table


def acc_row(**fields):
    correct = fields.pop("correct")
    return {**fields, **accuracy_ci(correct)}


def paper_rows(ctx, data, key, samples, transfer):
    """One study row's measures: train and test accuracy, and on each image sample the
    benign accuracy, the transferred and the adaptive FGSM-k (the study's loss); the
    study's figures beside."""
    model, name, sidecar = paper_model(ctx, key, data)
    study = STUDY_TABLE4[key]
    fgsm_k = suite.SUITE[suite.fgsm_k_name(ctx.protocol)]
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
        rows.append(acc_row(**common, measure=f"FGSM-k transfer, {sample.label}", eps=round(STUDY_EPS, 4),
                            study=study["fgsmk_adv"] if sample.is_study else "",
                            correct=predict_labels(model, transfer[sample.label]) == y))
        rows.append(acc_row(**common, measure=f"FGSM-k adaptive, {sample.label}", eps=round(STUDY_EPS, 4),
                            study="", correct=target.outcome(fgsm_k, x, y, STUDY_EPS, ctx.seed)))
    return rows


def evaluate_paper(ctx, data, retrain=False):
    """The study's five adversarial-training rows, each beside its figures."""
    base, _ = get_base_model(ctx, data)
    logs = train_paper(ctx, data, retrain)
    samples = paper_samples(len(data.y_test), 100 if ctx.quick else ctx.protocol.n_attack, ctx.seed)
    fgsm_k = suite.SUITE[suite.fgsm_k_name(ctx.protocol)]
    transfer = {s.label: fgsm_k.run(base, data.x_test[s.indices], data.y_test[s.indices], STUDY_EPS, ctx.seed)
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
    n = 100 if ctx.quick else ctx.protocol.n_attack
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
            correct = target.outcome(suite.SUITE[attack], x, y, suite.HEADLINE_EPS, ctx.seed)
            rows.append(acc_row(**common, attack=attack, eps=suite.HEADLINE_EPS, correct=correct,
                                settings=suite.SUITE[attack].describe(suite.HEADLINE_EPS)))
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
