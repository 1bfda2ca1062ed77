"""Randomized smoothing (Cohen, Rosenfeld & Kolter 2019): a base CNN trained with
Gaussian noise, the smoothed classifier's PREDICT and CERTIFY with a certified L2
radius per image, a resumable per-image log, and an empirical L2 attack beside the
certificate.

    python certified_robustness.py [--protocol standard|paper] [--sigmas 0.12 0.25 0.5] [--quick]
    python certified_robustness.py --sigmas 0.25 --n 100000 --shard 2/4     # one of 4 machines
    python certified_robustness.py --sigmas 0.25 --n 100000 --merge          # join the shards
"""
import argparse
import time
from pathlib import Path

import numpy as np
from scipy.stats import beta, binomtest, norm

import attacks
import model as core
from model import keras, tf

ABSTAIN = -1
SIGMAS = (0.12, 0.25, 0.5)
RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
TSV_COLUMNS = ("idx", "label", "predict", "radius", "correct", "time", "nA", "n")


# ------------------------------------------------------------------ statistics

def check_parameters(sigma=None, n0=None, n=None, alpha=None):
    """Reject impossible settings with a clear message."""
    if sigma is not None and not sigma > 0:
        raise core.UserError(f"sigma must be > 0, got {sigma}")
    if n0 is not None and n is not None and n0 > n:
        raise core.UserError(f"n0 ({n0}) must not exceed n ({n})")
    if alpha is not None and not 0 < alpha < 1:
        raise core.UserError(f"alpha must lie in (0, 1), got {alpha}")


def lower_confidence_bound(n_a, n, alpha):
    """One-sided (1 - alpha) Clopper-Pearson lower bound on a binomial proportion."""
    return 0.0 if n_a == 0 else float(beta.ppf(alpha, n_a, n - n_a + 1))


def certified_radius(n_a, n, alpha, sigma):
    """(pA_lower, radius); radius is None (abstain) when pA_lower < 1/2."""
    p_lower = lower_confidence_bound(n_a, n, alpha)
    return p_lower, (sigma * float(norm.ppf(p_lower)) if p_lower >= 0.5 else None)


def max_certifiable_radius(n, alpha, sigma):
    """The radius when all n samples agree: sigma * PhiInv(alpha ** (1 / n))."""
    return sigma * float(norm.ppf(alpha ** (1.0 / n)))


# -------------------------------------------------------------- the classifier

@keras.saving.register_keras_serializable(package="smoothing")
class GaussianNoiseAlways(keras.layers.Layer):
    """Adds N(0, sigma^2) noise at inference too: the randomized classifier whose
    majority vote is the smoothed classifier (what an EOT attacker differentiates)."""

    def __init__(self, sigma, **kwargs):
        super().__init__(**kwargs)
        self.sigma = float(sigma)

    def call(self, x):
        return x + self.sigma * tf.random.normal(tf.shape(x))

    def get_config(self):
        return {**super().get_config(), "sigma": self.sigma}


@tf.function(reduce_retracing=True)
def _noise_counts(model, x, num, batch_size, sigma, seed, num_classes):
    """Class counts of the base model on `num` noisy copies of one image, drawn and
    counted in batches inside this one compiled function."""
    counts = tf.zeros([num_classes], tf.int32)
    done, batch = tf.constant(0), tf.constant(0)
    while done < num:
        size = tf.minimum(batch_size, num - done)
        shape = tf.concat([[size], tf.shape(x)], axis=0)
        noise = sigma * tf.random.stateless_normal(shape, seed=tf.stack([seed, batch]))
        predictions = tf.argmax(model(x[None] + noise, training=False), axis=1, output_type=tf.int32)
        counts += tf.math.bincount(predictions, minlength=num_classes, maxlength=num_classes)
        done += size
        batch += 1
    return counts


class Smooth:
    """The smoothed classifier g(x) = argmax_c P(f(x + N(0, sigma^2 I)) = c)."""

    def __init__(self, base_model, sigma, num_classes=10, batch_size=1000):
        check_parameters(sigma=sigma)
        self.base, self.sigma, self.num_classes, self.batch_size = base_model, float(sigma), num_classes, batch_size

    def counts(self, x, num, seed):
        return _noise_counts(self.base, tf.constant(x, tf.float32), tf.constant(int(num)),
                             tf.constant(self.batch_size), tf.constant(self.sigma, tf.float32),
                             tf.constant(int(seed) % 2 ** 31, tf.int32), self.num_classes).numpy()

    def predict(self, x, n, alpha, seed=0):
        """Cohen's PREDICT: the top class, or ABSTAIN when a two-sided binomial test
        cannot tell the top two counts apart at level alpha."""
        check_parameters(alpha=alpha)
        counts = self.counts(x, n, seed)
        top2 = np.argsort(counts)[::-1][:2]
        n_a, n_b = int(counts[top2[0]]), int(counts[top2[1]])
        if binomtest(n_a, n_a + n_b, 0.5).pvalue > alpha:
            return ABSTAIN
        return int(top2[0])

    def certify(self, x, n0, n, alpha, seed=0):
        """Cohen's CERTIFY: (class or ABSTAIN, radius, nA). n0 samples pick the class,
        n fresh samples bound its probability from below."""
        check_parameters(n0=n0, n=n, alpha=alpha)
        guess = int(np.argmax(self.counts(x, n0, seed)))
        n_a = int(self.counts(x, n, seed + 1)[guess])
        _, radius = certified_radius(n_a, n, alpha, self.sigma)
        return (ABSTAIN, 0.0, n_a) if radius is None else (guess, radius, n_a)


# ------------------------------------------------------------- per-image log

def read_log(path):
    """Rows of a certification TSV; a torn last line (a killed run) is cut off."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text()
    if text and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
        path.write_text(text)
    lines = text.splitlines()
    if not lines:
        return []
    if tuple(lines[0].split("\t")) != TSV_COLUMNS:
        raise core.UserError(f"{path} is not a certification log (header {lines[0]!r})")
    return [dict(zip(TSV_COLUMNS, line.split("\t"))) for line in lines[1:]]


def certify_images(smooth, x, y, indices, path, n0, n, alpha, seed, progress=True):
    """Certify x[i] for each i in indices, appending one flushed row per image to
    path; images already in the log are skipped, so a rerun resumes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = {int(r["idx"]) for r in read_log(path)}
    todo = [i for i in indices if int(i) not in done]
    with open(path, "a") as log:
        if not done and log.tell() == 0:
            log.write("\t".join(TSV_COLUMNS) + "\n")
        for k, i in enumerate(todo):
            start = time.time()
            prediction, radius, n_a = smooth.certify(x[i], n0, n, alpha, seed=seed + 2 * int(i))
            row = (int(i), int(y[i]), prediction, f"{radius:.4f}", int(prediction == y[i]),
                   f"{time.time() - start:.3f}", n_a, n)
            log.write("\t".join(map(str, row)) + "\n")
            log.flush()
            if progress and (k + 1) % 25 == 0:
                print(f"    {path.name}: {len(done) + k + 1}/{len(indices)} images")
    return read_log(path)


def shard_range(indices, shard):
    """The contiguous block of indices of shard 'i/k' (i from 1 to k)."""
    i, k = shard
    size = -(-len(indices) // k)
    return indices[(i - 1) * size:i * size]


def shard_argument(text):
    try:
        i, k = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"use i/k, e.g. 2/4, got {text!r}") from None
    if not 1 <= i <= k:
        raise argparse.ArgumentTypeError(f"need 1 <= i <= k, got {text}")
    return i, k


def merge_shards(path):
    """Join path's shard logs (<stem>.shard<i>of<k>.tsv) into path, sorted by idx."""
    rows = {int(r["idx"]): r for r in read_log(path)}
    for shard in sorted(path.parent.glob(f"{path.stem}.shard*of*.tsv")):
        rows.update({int(r["idx"]): r for r in read_log(shard)})
    lines = ["\t".join(TSV_COLUMNS)] + ["\t".join(rows[i][c] for c in TSV_COLUMNS) for i in sorted(rows)]
    core.atomic_write_text(path, "\n".join(lines) + "\n")
    return len(rows)


def certified_accuracy(rows, radius):
    """Correct and certified at radius >= r (abstentions count as wrong)."""
    return core.accuracy_ci([int(r["correct"]) == 1 and float(r["radius"]) >= radius for r in rows])


# ---------------------------------------------------------------- experiment

def noise_model_name(protocol, sigma):
    return f"{protocol.architecture}_noise{sigma:g}"


def get_noise_model(args, sigma, data):
    """The protocol's CNN trained with Gaussian noise augmentation at sigma."""
    protocol = args.protocol_config

    def build():
        return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.GaussianNoise(sigma),
                                 core.build_model(protocol)], name=noise_model_name(protocol, sigma))
    return core.get_or_train(args, noise_model_name(protocol, sigma), build, data,
                             custom_objects={"GaussianNoiseAlways": GaussianNoiseAlways},
                             extra={"noise_sigma": sigma})


def noisy_model(base, sigma):
    """The randomized base classifier f(x + noise) whose vote is the smoothed
    classifier: what an EOT attacker differentiates."""
    return keras.Sequential([keras.Input((28, 28, 1)), GaussianNoiseAlways(sigma), base])


def smoothed_correct(smooth, x, y, n, seed):
    """Whether the smoothed classifier's vote (n samples, no abstention) is right."""
    return np.array([int(np.argmax(smooth.counts(x[i], n, seed + i))) == y[i] for i in range(len(y))])


def empirical_rows(args, label, model, x, y, radii, smooth=None, eot=16, n_vote=1000):
    """L2 PGD-20 at each radius: plain against a model, or with EOT over the noise
    against the smoothed classifier (then judged by its noisy vote)."""
    rows = []
    target = noisy_model(model, smooth.sigma) if smooth else model
    for radius in radii:
        if radius == 0:
            x_adv = x
        else:
            x_adv = attacks.pgd(target, x, y, eps=radius, norm="l2", steps=20, step_size=radius / 8,
                                eot_samples=eot if smooth else 1, seed=args.seed, batch_size=100 if smooth else 500)
        correct = (smoothed_correct(smooth, x_adv, y, n_vote, args.seed) if smooth
                   else core.predict_labels(model, x_adv) == y)
        rows.append({"model": label, "kind": "empirical (L2 PGD-20" + (f", EOT-{eot})" if smooth else ")"),
                     "radius": radius, **core.accuracy_ci(correct)})
    return rows


def plot_curves(logs, empirical, caps, title, path):
    plt = core.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    grid = np.linspace(0, 2.5, 101)
    for i, (sigma, rows) in enumerate(logs.items()):
        color = f"C{i}"
        ax.plot(grid, [100 * certified_accuracy(rows, r)["acc"] for r in grid], color=color,
                label=f"certified, sigma {sigma:g} ({len(rows)} images)")
        ax.axvline(caps[sigma], color=color, ls=":", lw=1)
    for j, label in enumerate(dict.fromkeys(r["model"] for r in empirical)):
        sel = [r for r in empirical if r["model"] == label]
        ax.errorbar([r["radius"] for r in sel], [100 * r["acc"] for r in sel], fmt="s--", ms=4, capsize=2,
                    color=f"C{j + len(logs)}", label=f"empirical: {label}",
                    yerr=[[100 * (r["acc"] - r["ci_low"]) for r in sel], [100 * (r["ci_high"] - r["acc"]) for r in sel]])
    ax.set(xlabel="L2 radius (pixels in [0, 1])", ylabel="accuracy (%)", ylim=(0, 100), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.text(0.99, 0.02, "dotted: largest radius the chosen n can certify", transform=ax.transAxes,
            ha="right", fontsize=7)
    core.save_figure(fig, path)


def main():
    parser = core.common_parser("Randomized smoothing with certified L2 radii (Cohen et al. 2019).")
    parser.add_argument("--sigmas", type=core.positive_float, nargs="+", default=None,
                        help=f"noise levels (default {' '.join(map(str, SIGMAS))})")
    parser.add_argument("--n", type=core.positive_int, default=None,
                        help="CERTIFY samples (default: 100,000 for sigma 0.25, 10,000 for the others; 1,000 with --quick)")
    parser.add_argument("--n0", type=core.positive_int, default=100, help="samples that pick the class")
    parser.add_argument("--alpha", type=float, default=0.001, help="failure probability of each certificate")
    parser.add_argument("--images", type=core.positive_int, default=None,
                        help="test images to certify (default 500; 20 with --quick)")
    parser.add_argument("--shard", type=shard_argument, default=None, help="certify block i of k only (i/k)")
    parser.add_argument("--merge", action="store_true", help="join the shard logs, then tabulate")
    args = core.parse_args(parser)
    if args.n is not None and args.n0 > args.n:
        parser.error(f"--n0 ({args.n0}) must not exceed --n ({args.n})")
    if not 0 < args.alpha < 1:
        parser.error(f"--alpha must lie in (0, 1), got {args.alpha}")
    protocol = args.protocol_config
    data = core.load_data(protocol, args.data_dir, args.quick)
    sigmas = args.sigmas or SIGMAS
    n_images = args.images or (20 if args.quick else 500)
    indices = core.attack_subset(len(data.y_test), n_images)
    logs, caps, table = {}, {}, []
    for sigma in sigmas:
        n = args.n or (1000 if args.quick else (100_000 if sigma == 0.25 else 10_000))
        model, _ = get_noise_model(args, sigma, data)
        base = model.layers[-1]
        path = args.results_dir / "certify" / f"{noise_model_name(protocol, sigma)}_sigma{sigma:g}_n{n}.tsv"
        if args.merge:
            print(f"merged {merge_shards(path)} images into {path}")
        elif args.shard:
            shard_path = path.with_name(f"{path.stem}.shard{args.shard[0]}of{args.shard[1]}.tsv")
            certify_images(Smooth(base, sigma), data.x_test, data.y_test, shard_range(indices, args.shard),
                           shard_path, args.n0, n, args.alpha, args.seed)
            print(f"wrote {shard_path}; run --merge once every shard is done")
            continue
        else:
            print(f"certifying {len(indices)} images, sigma {sigma:g}, n0 {args.n0}, n {n:,}, alpha {args.alpha}")
            certify_images(Smooth(base, sigma), data.x_test, data.y_test, indices, path, args.n0, n,
                           args.alpha, args.seed)
        rows = [r for r in read_log(path) if int(r["idx"]) in set(indices.tolist())]
        logs[sigma], caps[sigma] = rows, max_certifiable_radius(n, args.alpha, sigma)
        abstain = core.accuracy_ci([int(r["predict"]) == ABSTAIN for r in rows])
        for radius in RADII:
            stats = certified_accuracy(rows, radius)
            table.append({"protocol": protocol.name, "model": noise_model_name(protocol, sigma), "sigma": sigma,
                          "n0": args.n0, "n_samples": n, "alpha": args.alpha, "radius": radius, **stats,
                          "abstain_rate": round(abstain["acc"], 4), "max_certifiable_radius": round(caps[sigma], 3),
                          "mean_seconds_per_image": round(float(np.mean([float(r["time"]) for r in rows])), 3)})
            print(f"  sigma {sigma:g}, radius {radius:.2f}: certified {core.format_acc(stats)}")
    if args.shard or not table:
        return
    core.write_table(table, args.results_dir / "certified_robustness",
                     title=f"Certified accuracy of the smoothed {protocol.architecture}, {protocol.name} protocol, "
                           f"seed {args.seed} (exact 95% intervals; abstentions count as wrong)")
    x, y = data.x_test[indices], data.y_test[indices]
    empirical = empirical_rows(args, "undefended CNN", core.get_base_model(args, data)[0], x, y, RADII)
    chosen = 0.25 if 0.25 in logs else sigmas[0]
    noise_base = get_noise_model(args, chosen, data)[0].layers[-1]
    empirical += empirical_rows(args, f"noise-trained CNN sigma {chosen:g}, no smoothing", noise_base, x, y, RADII)
    empirical += empirical_rows(args, f"smoothed sigma {chosen:g}", noise_base, x, y, RADII,
                                smooth=Smooth(noise_base, chosen))
    for r in empirical:
        r["certified_acc"] = ""
        if r["model"].startswith("smoothed"):
            cert = certified_accuracy(logs[chosen], r["radius"])["acc"]
            r["certified_acc"] = round(cert, 4)
            r["violation"] = bool(r["acc"] < cert)  # empirical must never fall below certified
            if r["violation"]:
                print(f"  WARNING: empirical {r['acc']:.3f} < certified {cert:.3f} at radius {r['radius']}")
        r.setdefault("violation", "")
    core.write_table(empirical, args.results_dir / "certified_robustness_empirical",
                     title=f"Empirical L2 robustness on the same {len(y)} images (exact 95% intervals)")
    plot_curves(logs, empirical, caps, f"Randomized smoothing, {protocol.name} protocol ({len(indices)} images)",
                args.results_dir / "certified_accuracy.png")
    print(f"wrote {args.results_dir / 'certified_robustness.csv'}, ..._empirical.csv, certified_accuracy.png")


if __name__ == "__main__":
    core.run_main(main)
