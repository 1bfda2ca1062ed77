"""Input-filter defenses: the filters as Keras layers (median of any window, the
study's dual 2x2 median, Gaussian blur, bit-depth reduction, JPEG, random rotation),
each with a BPDA mode, and the experiment that reproduces the study's "median filter
only" row and then attacks every filter adaptively.

    python input_preprocessing.py [--protocol standard|paper] [--filters dual median3 ...] [--quick]
"""
import re
import time

import numpy as np

import attacks
import model as core
from model import keras, tf

# ------------------------------------------------------------------ filter layers


@keras.saving.register_keras_serializable(package="filters")
class FilterLayer(keras.layers.Layer):
    """An input filter. With bpda=True the forward pass is unchanged and the backward
    pass is the identity (BPDA, Athalye et al. 2018): the attacker's approximation
    of a filter whose own gradient is zero, undefined or useless."""
    randomized = False       # True: a fresh random transformation at every call (needs EOT)
    differentiable = True    # False: the true gradient is zero or absent (needs BPDA)

    def __init__(self, bpda=False, **kwargs):
        super().__init__(**kwargs)
        self.bpda = bool(bpda)

    def filter(self, x):
        raise NotImplementedError

    def call(self, x):
        if not self.bpda:
            return self.filter(x)

        @tf.custom_gradient
        def filter_with_identity_gradient(inputs):
            return self.filter(inputs), lambda upstream: upstream
        return filter_with_identity_gradient(x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "bpda": self.bpda}


@keras.saving.register_keras_serializable(package="filters")
class MedianFilter(FilterLayer):
    """size x size median, applied `repeats` times. Equal to
    scipy.ndimage.median_filter(img, size) per image: symmetric ('reflect') borders,
    window offsets -(size//2) .. size-1-size//2, and for an even window the upper of
    the two middle values (rank size*size//2)."""

    def __init__(self, size=3, repeats=1, **kwargs):
        super().__init__(**kwargs)
        if int(size) < 1 or int(repeats) < 1:
            raise ValueError(f"median window size and repeats must be >= 1, got {size} and {repeats}")
        self.size, self.repeats = int(size), int(repeats)

    def _median_once(self, x):
        k = self.size
        before, after = k // 2, k - 1 - k // 2
        padded = tf.pad(x, [[0, 0], [before, after], [before, after], [0, 0]], mode="SYMMETRIC")
        height, width = tf.shape(x)[1], tf.shape(x)[2]
        window = [padded[:, i:i + height, j:j + width, :] for i in range(k) for j in range(k)]
        if k == 2:
            # upper median of 4 values by a min/max network: 6x faster than sorting
            a, b, c, d = window
            return tf.maximum(tf.minimum(tf.maximum(a, b), tf.maximum(c, d)),
                              tf.maximum(tf.minimum(a, b), tf.minimum(c, d)))
        return tf.sort(tf.stack(window, axis=-1), axis=-1)[..., (k * k) // 2]

    def filter(self, x):
        for _ in range(self.repeats):
            x = self._median_once(x)
        return x

    def get_config(self):
        return {**super().get_config(), "size": self.size, "repeats": self.repeats}


@keras.saving.register_keras_serializable(package="filters")
class GaussianBlur(FilterLayer):
    """Gaussian blur (5x5 kernel, symmetric borders). Smooth: its gradient is exact."""

    def __init__(self, sigma=1.0, **kwargs):
        super().__init__(**kwargs)
        self.sigma = float(sigma)
        t = np.arange(-2, 3, dtype=np.float32)
        g = np.exp(-t ** 2 / (2 * self.sigma ** 2))
        kernel = np.outer(g, g) / np.outer(g, g).sum()
        self.kernel = tf.constant(kernel[:, :, None, None], tf.float32)

    def filter(self, x):
        padded = tf.pad(x, [[0, 0], [2, 2], [2, 2], [0, 0]], mode="SYMMETRIC")
        return tf.nn.conv2d(padded, self.kernel, strides=1, padding="VALID")

    def get_config(self):
        return {**super().get_config(), "sigma": self.sigma}


@keras.saving.register_keras_serializable(package="filters")
class BitDepth(FilterLayer):
    """Feature squeezing (Xu et al. 2018): pixels rounded to 2**bits grey levels."""
    differentiable = False

    def __init__(self, bits=3, **kwargs):
        super().__init__(**kwargs)
        self.bits = int(bits)
        if self.bits < 1:
            raise ValueError(f"bit depth must be >= 1, got {bits}")

    def filter(self, x):
        levels = float(2 ** self.bits - 1)
        return tf.round(x * levels) / levels

    def get_config(self):
        return {**super().get_config(), "bits": self.bits}


@keras.saving.register_keras_serializable(package="filters")
class JpegFilter(FilterLayer):
    """JPEG compression at a quality (the study screened JPEG 90). Runs on the CPU."""
    differentiable = False

    def __init__(self, quality=90, **kwargs):
        super().__init__(**kwargs)
        self.quality = int(quality)
        if not 1 <= self.quality <= 100:
            raise ValueError(f"JPEG quality must be in 1..100, got {quality}")

    def filter(self, x):
        out = tf.map_fn(lambda image: tf.image.adjust_jpeg_quality(image, self.quality), x,
                        fn_output_signature=tf.float32)
        return tf.reshape(out, tf.shape(x))

    def get_config(self):
        return {**super().get_config(), "quality": self.quality}


@keras.saving.register_keras_serializable(package="filters")
class RandomRotation(FilterLayer):
    """Rotation by a fresh uniform angle in [-degrees, degrees] per image and call, at
    test time too (the study's 10-degree rotation). Randomized: attack it with EOT."""
    randomized = True

    def __init__(self, degrees=10.0, **kwargs):
        super().__init__(**kwargs)
        self.degrees = float(degrees)

    def filter(self, x):
        n = tf.shape(x)[0]
        angle = tf.random.uniform([n], -1.0, 1.0) * self.degrees * np.pi / 180
        cos, sin = tf.cos(angle), tf.sin(angle)
        cy = (tf.cast(tf.shape(x)[1], tf.float32) - 1) / 2
        cx = (tf.cast(tf.shape(x)[2], tf.float32) - 1) / 2
        zero = tf.zeros_like(cos)
        transform = tf.stack([cos, -sin, cx - cx * cos + cy * sin,
                              sin, cos, cy - cx * sin - cy * cos, zero, zero], axis=1)
        return keras.ops.image.affine_transform(x, transform, interpolation="bilinear",
                                                fill_mode="constant", data_format="channels_last")

    def get_config(self):
        return {**super().get_config(), "degrees": self.degrees}


FILTERS = {
    "dual": lambda: MedianFilter(2, repeats=2, name="dual_median"),   # the study's pick
    "median2": lambda: MedianFilter(2, name="median2"),
    "median3": lambda: MedianFilter(3, name="median3"),
    "gaussian": lambda: GaussianBlur(1.0, name="gaussian"),
    "bits3": lambda: BitDepth(3, name="bits3"),
    "jpeg90": lambda: JpegFilter(90, name="jpeg90"),
    "rotate10": lambda: RandomRotation(10.0, name="rotate10"),
}


def make_filter(name):
    """A filter layer by name: one of FILTERS, or medianK / bitsK / jpegQ / rotateD."""
    if name in FILTERS:
        return FILTERS[name]()
    match = re.fullmatch(r"(median|bits|jpeg|rotate)(\d+)", name)
    if not match:
        raise core.UserError(f"unknown filter {name!r}: use one of {', '.join(FILTERS)} "
                             "or medianK, bitsK, jpegQ, rotateD")
    kind, value = match.group(1), int(match.group(2))
    try:
        layer = {"median": MedianFilter, "bits": BitDepth, "jpeg": JpegFilter,
                 "rotate": RandomRotation}[kind](value, name=name)
    except ValueError as e:
        raise core.UserError(f"filter {name!r}: {e}") from None
    return layer


def filter_argument(text):
    """argparse type: a valid filter name (checked by building it)."""
    import argparse
    try:
        make_filter(text)
    except core.UserError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def with_filter(filter_layer, classifier, name=None):
    """A filter defense: a Keras model whose first layer is the filter."""
    return keras.Sequential([keras.Input((28, 28, 1)), filter_layer, classifier],
                            name=name or f"{classifier.name}_{filter_layer.name}")


def filter_layers(model):
    return [layer for layer in model.layers if isinstance(layer, FilterLayer)]


def bpda_view(model):
    """The same model (shared weights) with every filter's backward pass replaced by
    the identity: what a BPDA attacker differentiates."""
    layers = [type(layer).from_config({**layer.get_config(), "bpda": True})
              if isinstance(layer, FilterLayer) else layer for layer in model.layers]
    return keras.Sequential([keras.Input((28, 28, 1)), *layers], name=model.name + "_bpda")


CUSTOM_OBJECTS = {cls.__name__: cls for cls in
                  (FilterLayer, MedianFilter, GaussianBlur, BitDepth, JpegFilter, RandomRotation)}


def get_filter_model(args, filter_name, data=None):
    """The protocol's CNN trained with the filter in place (cached in models/)."""
    protocol = args.protocol_config
    name = f"{protocol.architecture}_{filter_name}"
    return core.get_or_train(args, name, lambda: with_filter(make_filter(filter_name),
                                                             core.build_model(protocol), name),
                             data, custom_objects=CUSTOM_OBJECTS, extra={"filter": filter_name})


# ------------------------------------------------------------------ experiment

EPS_GRID = (0.02, 0.05, attacks.STUDY_EPS, 0.1, 0.15)
QUICK_EPS_GRID = (attacks.STUDY_EPS, 0.1)
HEADLINE_EPS = 0.1
EOT_SAMPLES = 10


def correct_on(model, x, y):
    return core.predict_labels(model, x) == y


def attack_views(model):
    """What an adaptive attacker differentiates, as (label, model, EOT draws): the
    model itself where every filter has a gradient, its BPDA view where a filter has
    none or a poor one; EOT over a randomized filter."""
    layers = filter_layers(model)
    eot = EOT_SAMPLES if any(layer.randomized for layer in layers) else 1
    views = []
    if all(layer.differentiable for layer in layers):
        views.append(("autodiff", model, eot))
    if any(not isinstance(layer, (GaussianBlur, RandomRotation)) for layer in layers):
        views.append(("BPDA", bpda_view(model), eot))
    return views


def worst_case_correct(model, y, make_adversarial):
    """Correct only where make_adversarial(view, eot_samples) -> x_adv failed through
    every attack view of the model: an image counts as robust only if every view's
    attack missed it."""
    correct = np.ones(len(y), dtype=bool)
    for _, view, eot in attack_views(model):
        correct &= correct_on(model, make_adversarial(view, eot), y)
    return correct


def adaptive_attack(model, x, y, *, seed, **pgd_options):
    """Per-image worst case of PGD through every attack view of the model (a filter's
    own gradient, its BPDA view, EOT over a randomized filter). pgd_options (eps,
    steps, norm, restarts, ...) go to attacks.pgd. Returns (correct mask, description)."""
    correct = worst_case_correct(model, y, lambda view, eot: attacks.pgd(view, x, y, eot_samples=eot, seed=seed,
                                                                         **pgd_options))
    views = attack_views(model)
    eot = views[0][2]
    return correct, " + ".join(label for label, _, _ in views) + (f", EOT-{eot}" if eot > 1 else "")


def row(protocol, filter_name, variant, attack, eps, correct, **extra):
    return {"protocol": protocol, "filter": filter_name, "variant": variant, "attack": attack,
            "eps": round(float(eps), 4), **core.accuracy_ci(correct), **extra}


def evaluate_filter_model(model, filter_name, variant, data, idx, transfer, args, eps_grid):
    """Every row for one defended model: clean accuracy on the whole test set, the
    transfer attacks crafted on the undefended model, the adaptive attacks, and per
    budget the worst case over all of them (an image counts as robust only if every
    attack at that budget failed on it): the robust accuracy to quote."""
    protocol = args.protocol_config.name
    x, y = data.x_test[idx], data.y_test[idx]
    rows = [row(protocol, filter_name, variant, "clean", 0, correct_on(model, data.x_test, data.y_test))]
    survived = {}  # eps -> images that no attack at this budget has broken yet

    def add(attack, eps, correct, how=""):
        rows.append(row(protocol, filter_name, variant, attack, eps, correct, how=how))
        survived[eps] = survived.get(eps, np.ones(len(y), dtype=bool)) & correct

    add("FGSM-k transfer", attacks.STUDY_EPS, correct_on(model, transfer["fgsm_k"], y))
    add("FGSM-k adaptive (BPDA)", attacks.STUDY_EPS, correct_on(model, attacks.fgsm_k(bpda_view(model), x, y), y))
    for eps in eps_grid:
        add("PGD-20 transfer", eps, correct_on(model, transfer[eps], y))
        add("PGD-20 adaptive", eps, *adaptive_attack(model, x, y, eps=eps, steps=20, seed=args.seed))
    if not args.quick:
        add("PGD-100 adaptive", HEADLINE_EPS, *adaptive_attack(model, x, y, eps=HEADLINE_EPS, steps=100,
                                                                    seed=args.seed))
    for eps in eps_grid:
        rows.append(row(protocol, filter_name, variant, "worst case", eps, survived[eps],
                        how="every attack above at this eps"))
    for r in rows:
        r.setdefault("how", "")
        print(f"  {filter_name:>9} {variant:>10} {r['attack']:>24} eps={r['eps']:.4f}: {core.format_acc(r)}")
    return rows


def run_standard(args, data, filters):
    protocol = args.protocol_config
    base, _ = core.get_base_model(args, data)
    n = 200 if args.quick else protocol.n_attack
    idx = core.attack_subset(len(data.y_test), n)
    x, y = data.x_test[idx], data.y_test[idx]
    eps_grid = QUICK_EPS_GRID if args.quick else EPS_GRID
    print(f"crafting transfer attacks on the undefended {protocol.architecture} ({n} images)")
    transfer = {eps: attacks.pgd(base, x, y, eps=eps, steps=20, seed=args.seed) for eps in eps_grid}
    transfer["fgsm_k"] = attacks.fgsm_k(base, x, y)
    rows = evaluate_filter_model(base, "none", "undefended", data, idx, transfer, args, eps_grid)
    for filter_name in filters:
        start = time.time()
        trained, _ = get_filter_model(args, filter_name, data)
        rows += evaluate_filter_model(trained, filter_name, "trained", data, idx, transfer, args, eps_grid)
        test_time = with_filter(make_filter(filter_name), base)
        rows += evaluate_filter_model(test_time, filter_name, "test-time", data, idx, transfer, args, eps_grid)
        print(f"  {filter_name}: {time.time() - start:.0f} s")
    return rows, (x, y, transfer)


def study_rows(args, data):
    """The study's "median filter only" row: its CNN trained on its 5,000 images with
    the dual filter in place; FGSM-k crafted on the undefended CNN and transferred, on
    20 images drawn with replacement (as the study did) and on 1,000; then adaptive."""
    protocol = args.protocol_config
    base, _ = core.get_base_model(args, data)
    defended, _ = get_filter_model(args, "dual", data)
    study = core.STUDY_TABLE4["median filter only"]
    rows = [row("paper", "dual", "trained", "clean (train set)", 0,
                correct_on(defended, data.x_train, data.y_train), study=study["train_acc"]),
            row("paper", "dual", "trained", "clean (test set)", 0,
                correct_on(defended, data.x_test, data.y_test), study=study["test_acc"])]
    n_test, n = len(data.y_test), 100 if args.quick else protocol.n_attack
    samples = {"20 with replacement (study)": core.study_sample(n_test, args.seed),
               f"{n} fixed": core.attack_subset(n_test, n)}
    for sample_name, idx in samples.items():
        x, y = data.x_test[idx], data.y_test[idx]
        is_study = sample_name.startswith("20")
        x_transfer = attacks.fgsm_k(base, x, y)
        rows.append(row("paper", "dual", "trained", f"FGSM-k benign, {sample_name}", 0,
                        correct_on(defended, x, y), study=study["fgsmk_benign"] if is_study else ""))
        rows.append(row("paper", "dual", "trained", f"FGSM-k transfer, {sample_name}", attacks.STUDY_EPS,
                        correct_on(defended, x_transfer, y), study=study["fgsmk_adv"] if is_study else ""))
        x_adaptive = attacks.fgsm_k(bpda_view(defended), x, y)
        rows.append(row("paper", "dual", "trained", f"FGSM-k adaptive (BPDA), {sample_name}",
                        attacks.STUDY_EPS, correct_on(defended, x_adaptive, y), study=""))
        if not is_study:
            correct, how = adaptive_attack(defended, x, y, eps=attacks.STUDY_EPS, steps=20, seed=args.seed)
            rows.append(row("paper", "dual", "trained", f"PGD-20 adaptive ({how}), {sample_name}",
                            attacks.STUDY_EPS, correct, study=""))
            examples = (x, y, x_transfer, defended, x_adaptive)
    for r in rows:
        print(f"  {r['attack']:>52}: {core.format_acc(r)}   study: {r['study']}")
    return rows, examples


# ----------------------------------------------------------------------- plots

def plot_accuracy_vs_eps(rows, title, path):
    plt = core.pyplot()
    filters = [f for f in dict.fromkeys(r["filter"] for r in rows) if f != "none"]
    cols = min(4, len(filters))
    n_rows = -(-len(filters) // cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(4 * cols, 3.5 * n_rows), squeeze=False, sharey=True,
                             constrained_layout=True)
    styles = {("trained", "PGD-20 transfer"): ("C0", "--"), ("trained", "worst case"): ("C0", "-"),
              ("test-time", "PGD-20 transfer"): ("C1", "--"), ("test-time", "worst case"): ("C1", "-"),
              ("undefended", "worst case"): ("grey", ":")}
    for ax, filter_name in zip(axes.ravel(), filters):
        for (variant, attack), (color, style) in styles.items():
            name = "none" if variant == "undefended" else filter_name
            clean = [r for r in rows if (r["filter"], r["variant"], r["attack"]) == (name, variant, "clean")]
            sel = sorted((r for r in rows if (r["filter"], r["variant"], r["attack"]) == (name, variant, attack)),
                         key=lambda r: r["eps"])
            if not sel:
                continue
            pts = clean + sel
            eps = [0.0] + [r["eps"] for r in sel]
            label = ("undefended, white-box" if variant == "undefended"
                     else f"filter {variant}, {'transfer' if 'transfer' in attack else 'worst case'}")
            ax.plot(eps, [100 * r["acc"] for r in pts], style, color=color, marker="o", ms=3, label=label)
            ax.fill_between(eps, [100 * r["ci_low"] for r in pts], [100 * r["ci_high"] for r in pts],
                            color=color, alpha=0.12)
        ax.set(title=filter_name, xlabel="L-inf eps", ylim=(0, 100))
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy (%)")
    for ax in axes.ravel()[len(filters):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7, loc="lower left")
    fig.suptitle(title)
    core.save_figure(fig, path)


def plot_examples(model, x, y, x_transfer, x_adaptive, title, path, count=4):
    """Clean image, what the filter makes of it, the transfer and the adaptive
    adversarial images, each with the defended model's prediction and confidence."""
    plt = core.pyplot()
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
                ax.set_title(f"{label}\n{core.CLASS_NAMES[pred]} {100 * probs[pred]:.0f}% ({mark})", fontsize=8)
            ax.axis("off")
        axes[i, 0].text(-3, 14, core.CLASS_NAMES[y[i]], rotation=90, va="center", ha="right", fontsize=8)
    fig.suptitle(title, fontsize=9)
    core.save_figure(fig, path)


def headline_table(rows):
    """One line per defended model: clean and the key robust accuracies."""
    def cell(r):
        return f"{100 * r['acc']:.1f} [{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}]" if r else "-"

    wanted = [("clean", 0), ("FGSM-k transfer", attacks.STUDY_EPS), ("FGSM-k adaptive (BPDA)", attacks.STUDY_EPS),
              ("PGD-20 transfer", HEADLINE_EPS), ("PGD-20 adaptive", HEADLINE_EPS),
              ("PGD-100 adaptive", HEADLINE_EPS), ("worst case", HEADLINE_EPS)]
    table = []
    for key in dict.fromkeys((r["filter"], r["variant"]) for r in rows):
        out = {"filter": key[0], "variant": key[1]}
        for attack, eps in wanted:
            match = [r for r in rows if (r["filter"], r["variant"], r["attack"]) == key + (attack,)
                     and abs(r["eps"] - round(eps, 4)) < 1e-9]
            out[f"{attack} @{eps:.3g}" if eps else attack] = cell(match[0] if match else None)
        out["n (attacks)"] = next((r["n"] for r in rows if (r["filter"], r["variant"]) == key
                                   and r["attack"] != "clean"), "")
        table.append(out)
    return table


def main():
    parser = core.common_parser("The study's filter defenses, reproduced (paper protocol) and "
                                "attacked adaptively (standard protocol).")
    parser.add_argument("--filters", nargs="+", type=filter_argument, default=None,
                        help=f"filters to evaluate (standard protocol; default: {' '.join(FILTERS)}; "
                             "also medianK, bitsK, jpegQ, rotateD)")
    args = core.parse_args(parser)
    protocol = args.protocol_config
    data = core.load_data(protocol, args.data_dir, args.quick)
    stem = args.results_dir / f"input_preprocessing_{protocol.name}"
    if protocol.name == "paper":
        rows, (x, y, x_transfer, defended, x_adaptive) = study_rows(args, data)
        core.write_table(rows, stem, title="The study's 'median filter only' row (dual 2x2 median, its CNN, "
                         f"its 5,000 training images), ours beside the study's; seed {args.seed}")
        attack_label = "FGSM-k 20/255"
    else:
        filters = args.filters or (["dual", "bits3"] if args.quick else list(FILTERS))
        rows, (x, y, transfer) = run_standard(args, data, filters)
        core.write_table(rows, stem, title=f"Filter defenses, standard protocol, seed {args.seed} "
                         "(exact 95% intervals; 'how' names the adaptive attacks combined per image)")
        core.write_table(headline_table(rows), args.results_dir / f"input_preprocessing_{protocol.name}_summary",
                         title=f"Filter defenses at a glance: accuracy % [95% interval], clean on "
                               f"{len(data.y_test):,} test images, attacks on {len(y):,}")
        plot_accuracy_vs_eps(rows, "Filter defenses: PGD-20 transfer (dashed) vs worst case of transfer and adaptive attacks (solid)",
                             args.results_dir / f"input_preprocessing_{protocol.name}_eps.png")
        example_filter = "dual" if "dual" in filters else filters[0]
        defended = get_filter_model(args, example_filter, data)[0]
        x_transfer = transfer[HEADLINE_EPS]
        x_adaptive = attacks.pgd(bpda_view(defended), x, y, eps=HEADLINE_EPS, steps=20, seed=args.seed)
        attack_label = f"PGD-20 eps {HEADLINE_EPS}"
    plot_examples(defended, x, y, x_transfer, x_adaptive,
                  f"{defended.name} ({protocol.name} protocol), {attack_label}: transfer (crafted on the "
                  "undefended CNN) vs adaptive (BPDA through the filter)",
                  args.results_dir / f"input_preprocessing_{protocol.name}_examples.png")
    print(f"wrote {stem}.csv, {stem}.md and plots in {args.results_dir}")


if __name__ == "__main__":
    core.run_main(main)
