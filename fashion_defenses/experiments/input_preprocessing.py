"""The filter stage (what input_preprocessing.py runs): the study's "median filter
only" row reproduced (paper protocol), then every filter attacked adaptively in front
of the undefended CNN at test time, and the catalogue's filters
(filters.TRAINED_BEHIND: median3, dual) also with a CNN trained behind them
(standard protocol)."""
import time

import numpy as np

from fashion_defenses.attacks import suite
from fashion_defenses.attacks.gradient import LOSSES
from fashion_defenses.data import CLASS_NAMES, STUDY_EPS, STUDY_TABLE4, attack_subset, load_data, paper_samples
from fashion_defenses.defenses import filters
from fashion_defenses.defenses.filters import bpda_view, filter_layers, get_filter_model, make_filter, with_filter
from fashion_defenses.framework import tf
from fashion_defenses.models import get_base_model, predict_labels
from fashion_defenses.reporting import accuracy_ci, eps_text, format_acc, pct, pyplot, save_figure, write_table
from fashion_defenses.settings import STANDARD_FILTERS

EPS_GRID = (0.02, 0.05, STUDY_EPS, 0.1, 0.15)

QUICK_EPS_GRID = (STUDY_EPS, 0.1)


def correct_on(model, x, y):
    return predict_labels(model, x) == y


def row(protocol, filter_name, variant, attack, eps, correct, **extra):
    return {"protocol": protocol, "filter": filter_name, "variant": variant, "attack": attack,
            "norm": "-" if eps == 0 else "linf", "eps": round(float(eps), 4), **accuracy_ci(correct), **extra}


def evaluate_filter_model(model, filter_name, variant, data, idx, transfer, *, protocol, seed, eps_grid,
                          n_randomized, autoattack=True):
    """Every row for one defended model: clean accuracy on the whole test set, then
    suite.measure on the fixed images (a randomized filter on the first n_randomized
    of them, as the evaluation attacks every randomized defense): the transfer attacks
    crafted on the undefended model, the suite through every attack view of the
    filter, and per budget the worst case over all of them (the robust accuracy to
    quote). A --quick run leaves AutoAttack out."""
    target = filters.target(model)
    if target.randomized:
        idx, transfer = suite.randomized_images(idx, transfer, len(data.y_test), n_randomized)
    x, y = data.x_test[idx], data.y_test[idx]
    print(f"{filter_name} filter, {variant} (attacked through: {target.describe()})")
    measured, _ = suite.measure(target, x, y, suite.Plan(eps_grid, autoattack=autoattack), seed, transfer)
    rows = [row(protocol, filter_name, variant, "clean", 0, correct_on(model, data.x_test, data.y_test),
                settings="whole test set", how="")]
    rows += [{"protocol": protocol, "filter": filter_name, "variant": variant, **r,
              "attack": "benign" if r["attack"] == "clean" else r["attack"],
              "how": "transfer" if "transfer" in r["attack"] else target.describe()} for r in measured]
    return rows


def randomized_count(ctx, n):
    """Of n fixed images, how many a randomized filter is attacked on: the first 500, as
    in the evaluation (half of them in a --quick run)."""
    return n // 2 if ctx.quick else min(n, suite.N_ATTACK_RANDOMIZED)


def summary_title(ctx, filter_names, n_test, n):
    """The filter summary's title; the randomized filters' smaller image set is named
    only when the run has one."""
    randomized = any(make_filter(name).randomized for name in filter_names)
    cut = f" (a randomized filter on the first {randomized_count(ctx, n):,} of them)" if randomized else ""
    return (f"Filter defenses at a glance: accuracy % [95% interval], clean on {n_test:,} test images, "
            f"attacks on {n:,}{cut}")


def standard_rows(ctx, data, filter_names, retrain=False):
    """Rows of the undefended CNN and of every filter, trained behind it and put in
    front of the undefended CNN at test time; and the attacked images with their
    transfer examples (for the example plot)."""
    base, _ = get_base_model(ctx, data)
    n = 100 if ctx.quick else ctx.protocol.n_attack
    idx = attack_subset(len(data.y_test), n)
    x, y = data.x_test[idx], data.y_test[idx]
    eps_grid = QUICK_EPS_GRID if ctx.quick else EPS_GRID
    print(f"crafting transfer attacks on the undefended {ctx.protocol.architecture} ({n} images)")
    transfer = suite.transfer_examples(base, x, y, eps_grid, "FGSM-k", ctx.seed)
    settings = dict(protocol=ctx.protocol.name, seed=ctx.seed, eps_grid=eps_grid, autoattack=not ctx.quick,
                    n_randomized=randomized_count(ctx, n))
    rows = evaluate_filter_model(base, "none", "undefended", data, idx, transfer, **settings)
    for filter_name in filter_names:
        start = time.time()
        if filter_name in filters.TRAINED_BEHIND:
            trained, _ = get_filter_model(ctx, filter_name, data, retrain)
            rows += evaluate_filter_model(trained, filter_name, "trained", data, idx, transfer, **settings)
        test_time = with_filter(make_filter(filter_name), base)
        rows += evaluate_filter_model(test_time, filter_name, "test-time", data, idx, transfer, **settings)
        print(f"  {filter_name}: {time.time() - start:.0f} s")
    return rows, (x, y, transfer)


def study_rows(ctx, data):
    """The study's "median filter only" row as its code made it: its CNN, trained on
    its 5,000 raw images, with the dual filter put in front at prediction time; FGSM-k
    (the study's loss) crafted on the CNN without the filter and transferred, on 20
    images drawn with replacement (as the study did) and on 1,000; then adaptive."""
    base, _ = get_base_model(ctx, data)
    defended = with_filter(make_filter("dual"), base)
    study, fgsm_k = STUDY_TABLE4["median filter only"], suite.SUITE[suite.fgsm_k_name(ctx.protocol)]
    target = filters.target(defended)
    rows = [row("paper", "dual", "test-time", "clean (train set)", 0,
                correct_on(defended, data.x_train, data.y_train), study=study["train_acc"]),
            row("paper", "dual", "test-time", "clean (test set)", 0,
                correct_on(defended, data.x_test, data.y_test), study=study["test_acc"])]
    n = 100 if ctx.quick else ctx.protocol.n_attack
    for sample in paper_samples(len(data.y_test), n, ctx.seed):
        x, y = data.x_test[sample.indices], data.y_test[sample.indices]
        x_transfer = fgsm_k.run(base, x, y, STUDY_EPS, ctx.seed)
        rows.append(row("paper", "dual", "test-time", f"FGSM-k benign, {sample.label}", 0,
                        correct_on(defended, x, y), study=study["fgsmk_benign"] if sample.is_study else ""))
        rows.append(row("paper", "dual", "test-time", f"FGSM-k transfer, {sample.label}", STUDY_EPS,
                        correct_on(defended, x_transfer, y), study=study["fgsmk_adv"] if sample.is_study else ""))
        rows.append(row("paper", "dual", "test-time", f"FGSM-k adaptive, {sample.label}", STUDY_EPS,
                        target.outcome(fgsm_k, x, y, STUDY_EPS, ctx.seed), study=""))
        if not sample.is_study:
            rows.append(row("paper", "dual", "test-time", f"PGD-20 adaptive ({target.describe()}), {sample.label}",
                            STUDY_EPS, target.outcome(suite.SUITE["PGD-20"], x, y, STUDY_EPS,
                                                              ctx.seed), study=""))
            x_adaptive = fgsm_k.run(bpda_view(defended), x, y, STUDY_EPS, ctx.seed)
            examples = (x, y, x_transfer, defended, x_adaptive)
    for r in rows:
        print(f"  {r['attack']:>52}: {format_acc(r)}   study: {r['study']}")
    return rows, examples


PLOT_TITLE = "Filter defenses: PGD-20 transfer (dashed) vs the worst case of the suite (pale band)"


def plot_accuracy_vs_eps(rows, title, path):
    """One panel per filter: transfer and worst case per variant, markers at the measured
    budgets; the worst case a pale band beneath, so a transfer line on it stays visible."""
    plt = pyplot()
    filters = [f for f in dict.fromkeys(r["filter"] for r in rows) if f != "none"]
    cols = min(4, len(filters))
    n_rows = -(-len(filters) // cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(4 * cols, 3.5 * n_rows), squeeze=False, sharey=True,
                             constrained_layout=True)
    line = lambda color, ls: dict(color=color, ls=ls, marker="o", ms=3, zorder=2)  # noqa: E731  (with its interval)
    band = lambda color: dict(color=color, lw=6, alpha=0.3, zorder=1)  # noqa: E731
    styles = {("trained", "PGD-20 transfer"): line("C0", "--"), ("trained", "worst case"): band("C0"),
              ("test-time", "PGD-20 transfer"): line("C1", "--"), ("test-time", "worst case"): band("C1"),
              ("undefended", "worst case"): line("grey", ":")}
    for ax, filter_name in zip(axes.ravel(), filters):
        for (variant, attack), style in styles.items():
            name = "none" if variant == "undefended" else filter_name
            clean = [r for r in rows if (r["filter"], r["variant"], r["attack"]) == (name, variant, "benign")]
            sel = sorted((r for r in rows if (r["filter"], r["variant"], r["attack"]) == (name, variant, attack)),
                         key=lambda r: r["eps"])
            if not sel:
                continue
            pts = clean[:1] + sel
            eps = [r["eps"] for r in pts]
            label = ("undefended, white-box" if variant == "undefended"
                     else f"filter {variant}, {'transfer' if 'transfer' in attack else 'worst case'}")
            ax.plot(eps, [100 * r["acc"] for r in pts], label=label, **style)
            if "marker" in style:
                ax.fill_between(eps, [100 * r["ci_low"] for r in pts], [100 * r["ci_high"] for r in pts],
                                color=style["color"], alpha=0.12)
        ax.set(title=filter_name, xlabel="L-inf eps", ylim=(0, 100))
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy (%)")
    for ax in axes.ravel()[len(filters):]:
        ax.axis("off")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=len(labels), bbox_to_anchor=(0.5, -0.06))
    fig.suptitle(title)
    save_figure(fig, path)


def plot_examples(model, x, y, x_transfer, x_adaptive, title, path, count=4):
    """Clean image, what the filter makes of it, the transfer and the adaptive
    adversarial images, each with the defended model's prediction and confidence."""
    plt = pyplot()
    layer = filter_layers(model)[0]
    columns = [("clean", x), ("filter output", None), ("transfer adversarial", x_transfer),
               ("adaptive adversarial", x_adaptive)]
    fig, axes = plt.subplots(count, len(columns), figsize=(2.3 * len(columns), 2.5 * count), squeeze=False)
    for i in range(count):
        for j, (label, images) in enumerate(columns):
            ax = axes[i, j]
            if images is None:
                ax.imshow(np.asarray(layer(x[i:i + 1]))[0, :, :, 0], cmap="gray", vmin=0, vmax=1)
                ax.set_title(label, fontsize=8)
            else:
                probs = tf.nn.softmax(model(images[i:i + 1], training=False))[0].numpy()
                pred = int(np.argmax(probs))
                ax.imshow(images[i, :, :, 0], cmap="gray", vmin=0, vmax=1)
                mark = "ok" if pred == y[i] else "WRONG"
                ax.set_title(f"{label}\n{CLASS_NAMES[pred]} {100 * probs[pred]:.0f}% ({mark})", fontsize=8)
            ax.axis("off")
        axes[i, 0].text(-3, 14, CLASS_NAMES[y[i]], rotation=90, va="center", ha="right", fontsize=8)
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)


def headline_table(rows):
    """One line per defended model: clean and the key robust accuracies."""
    wanted = [("clean", 0), ("FGSM-k transfer", STUDY_EPS), ("FGSM-k", STUDY_EPS),
              ("PGD-20 transfer", suite.HEADLINE_EPS), ("PGD-20", suite.HEADLINE_EPS),
              ("AutoAttack", suite.HEADLINE_EPS), (suite.AUTOATTACK_RAND_LABEL, suite.HEADLINE_EPS),
              ("worst case", suite.HEADLINE_EPS)]
    table = []
    for key in dict.fromkeys((r["filter"], r["variant"]) for r in rows):
        out = {"filter": key[0], "variant": key[1]}
        for attack, eps in wanted:
            match = [r for r in rows if (r["filter"], r["variant"], r["attack"]) == key + (attack,)
                     and abs(r["eps"] - round(eps, 4)) < 1e-9]
            out[f"{attack} @{eps_text(eps)}" if eps else attack] = pct(match[0] if match else None) or "-"
        out["n (attacks)"] = next((r["n"] for r in rows if (r["filter"], r["variant"]) == key
                                   and r["attack"] != "clean"), "")
        table.append(out)
    return table


def run_paper(ctx):
    """The study's "median filter only" row beside its figures, and the example plot."""
    data = load_data(ctx.protocol, ctx.data_dir, ctx.quick)
    rows, (x, y, x_transfer, defended, x_adaptive) = study_rows(ctx, data)
    stem = ctx.results_dir / "input_preprocessing_paper"
    write_table(rows, stem, title="The study's 'median filter only' row (its CNN, trained on its 5,000 images, "
                f"with the dual 2x2 median in front at prediction time), ours beside the study's; seed {ctx.seed}; "
                f"FGSM-k with the study's loss ({LOSSES['study']})")
    plot_examples(defended, x, y, x_transfer, x_adaptive,
                  f"{defended.name} (paper protocol), FGSM-k 20/255: transfer (crafted on the "
                  "undefended CNN) vs adaptive (BPDA through the filter)", f"{stem}_examples.png")
    print(f"wrote {stem}.csv, {stem}.md and plots in {ctx.results_dir}")


def run_standard(ctx, filter_names=None, retrain=False):
    """Every filter put in front at test time (and, for filters.TRAINED_BEHIND, trained
    behind), attacked adaptively."""
    data = load_data(ctx.protocol, ctx.data_dir, ctx.quick)
    filter_names = filter_names or (["dual", "bits3"] if ctx.quick else list(STANDARD_FILTERS))
    rows, (x, y, transfer) = standard_rows(ctx, data, filter_names, retrain)
    stem = ctx.results_dir / "input_preprocessing_standard"
    write_table(rows, stem, title=f"Filter defenses, standard protocol, seed {ctx.seed} "
                "(exact 95% intervals; 'how' names the adaptive attacks combined per image; FGSM-k and PGD "
                f"ascend the {LOSSES['ce']})")
    write_table(headline_table(rows), f"{stem}_summary",
                title=summary_title(ctx, filter_names, len(data.y_test), len(y)))
    plot_accuracy_vs_eps(rows, PLOT_TITLE, f"{stem}_eps.png")
    example_filter = "dual" if "dual" in filter_names else filter_names[0]
    defended = (get_filter_model(ctx, example_filter, data)[0] if example_filter in filters.TRAINED_BEHIND
                else with_filter(make_filter(example_filter), get_base_model(ctx, data)[0]))
    x_adaptive = suite.SUITE["PGD-20"].run(bpda_view(defended), x, y, suite.HEADLINE_EPS, ctx.seed)
    x_transfer = next(x_adv for label, eps, x_adv in transfer if label == "PGD-20 transfer"
                      and eps == suite.HEADLINE_EPS)
    plot_examples(defended, x, y, x_transfer, x_adaptive,
                  f"{defended.name} (standard protocol), PGD-20 eps {suite.HEADLINE_EPS}: transfer (crafted on the "
                  "undefended CNN) vs adaptive (BPDA through the filter)", f"{stem}_examples.png")
    print(f"wrote {stem}.csv, {stem}.md and plots in {ctx.results_dir}")
