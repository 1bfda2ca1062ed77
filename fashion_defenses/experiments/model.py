"""The base-model stage (what model.py runs): train or load the protocol's
undefended CNN, its accuracy on every split, and its training curve."""
import numpy as np

from fashion_defenses.data import load_data
from fashion_defenses.models import base_model_name, get_base_model, predict_labels
from fashion_defenses.reporting import accuracy_ci, format_acc, pyplot, save_figure, write_table


def plot_training_curve(history, title, path, weight_penalty=False):
    plt = pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = np.arange(1, len(history["loss"]) + 1)
    ax_loss.plot(epochs, history["loss"], "o-", label="train")
    ax_loss.plot(epochs, history["val_loss"], "o-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss" + (" + L2 weight penalty" if weight_penalty else ""),
                title="loss")
    ax_acc.plot(epochs, 100 * np.array(history["accuracy"]), "o-", label="train (dropout on)")
    ax_acc.plot(epochs, 100 * np.array(history["val_accuracy"]), "o-", label="validation")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    save_figure(fig, path)


def run_base_model(ctx, retrain=False):
    """Train (or load) the base CNN; its accuracy on each split, with the training curve."""
    protocol = ctx.protocol
    data = load_data(protocol, ctx.data_dir, ctx.quick)
    model, sidecar = get_base_model(ctx, data, retrain=retrain)
    rows = []
    for split, x, y in (("train", data.x_train, data.y_train), ("validation", data.x_val, data.y_val),
                        ("test", data.x_test, data.y_test)):
        stats = accuracy_ci(predict_labels(model, x) == y)
        print(f"{split:>10} accuracy {format_acc(stats)}")
        rows.append({"protocol": protocol.name, "model": base_model_name(protocol), "split": split,
                     **stats, "seed": sidecar.get("seed", ctx.seed),
                     "epochs_run": sidecar.get("epochs_run"),
                     "seconds_per_epoch": sidecar.get("seconds_per_epoch")})
    stem = ctx.results_dir / f"base_model_{protocol.name}"
    write_table(rows, stem, title=f"Undefended base CNN, {protocol.name} protocol "
                                  f"(exact 95% Clopper-Pearson intervals)")
    if sidecar.get("history"):
        plot_training_curve(sidecar["history"], f"{base_model_name(protocol)} training, {protocol.name} protocol",
                            ctx.results_dir / f"training_curve_{protocol.name}.png", weight_penalty=bool(model.losses))
    print(f"wrote {stem}.csv, {stem}.md")
