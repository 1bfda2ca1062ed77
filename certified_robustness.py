"""Randomized smoothing (Cohen, Rosenfeld & Kolter 2019): a base CNN trained with
Gaussian noise, the smoothed classifier's PREDICT and CERTIFY with a certified L2
radius per image, a resumable per-image log, and an empirical L2 attack beside the
certificate.

    python certified_robustness.py [--sigmas 0.12 0.25 0.5] [--quick]          # standard protocol only
    python certified_robustness.py --sigmas 0.25 --samples 100000 --shard 2/4     # one of 4 machines
    python certified_robustness.py --sigmas 0.25 --samples 100000 --merge          # join the shards
"""
import argparse
import time
from pathlib import Path

from cli import UserError, check_flags_early, common_parser, parse_args, positive_float, positive_int, run_main

ABSTAIN = -1
SIGMAS = (0.12, 0.25, 0.5)
RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
TSV_COLUMNS = ("idx", "label", "predict", "radius", "correct", "time", "nA", "n")
CERTIFY_ALPHA = 0.001   # each certificate's failure probability (Cohen et al.'s)


def shard_argument(text):
    try:
        i, k = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"use i/k, e.g. 2/4, got {text!r}") from None
    if not 1 <= i <= k:
        raise argparse.ArgumentTypeError(f"need 1 <= i <= k, got {text}")
    return i, k


def build_parser():
    parser = common_parser("Randomized smoothing with certified L2 radii (Cohen et al. 2019).")
    parser.add_argument("--sigmas", type=positive_float, nargs="+", default=None,
                        help=f"noise levels (default {' '.join(map(str, SIGMAS))})")
    parser.add_argument("--samples", type=positive_int, default=None,
                        help="CERTIFY samples (default: 100,000 for sigma 0.25, 10,000 for the others; 1,000 with --quick)")
    parser.add_argument("--n0", type=positive_int, default=100, help="CERTIFY samples that pick the class")
    parser.add_argument("--alpha", type=float, default=CERTIFY_ALPHA, help="failure probability of each certificate")
    parser.add_argument("--images", type=positive_int, default=None,
                        help="test images to certify (default 500; 20 with --quick)")
    parser.add_argument("--shard", type=shard_argument, default=None, help="certify block i of k only (i/k)")
    parser.add_argument("--merge", action="store_true", help="join the shard logs, then tabulate")
    parser.add_argument("--retrain", action="store_true",
                        help="train the noise CNNs again even if cached, and certify them afresh")
    return parser


check_flags_early(__name__, build_parser)

import numpy as np  # noqa: E402 (the imports below load TensorFlow: after --help)
from scipy.stats import beta, binomtest, norm  # noqa: E402

import attacks  # noqa: E402
from data import attack_subset, load_data  # noqa: E402
from model import base_classifier, build_model, get_base_model, get_or_train, keras, tf  # noqa: E402
from outcome_store import array_fingerprint, model_fingerprint  # noqa: E402
from reporting import (Progress, accuracy_ci, atomic_write_text, error_bars, format_acc, pct,  # noqa: E402
                       pyplot, save_figure, write_table)


# ------------------------------------------------------------------ statistics

def check_parameters(sigma=None, n0=None, n=None, alpha=None):
    """Reject impossible settings with a clear message."""
    if sigma is not None and not sigma > 0:
        raise UserError(f"sigma must be > 0, got {sigma}")
    if n0 is not None and n is not None and n0 > n:
        raise UserError(f"n0 ({n0}) must not exceed n ({n})")
    if alpha is not None and not 0 < alpha < 1:
        raise UserError(f"alpha must lie in (0, 1), got {alpha}")


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

    randomized = True

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
        raise UserError(f"{path} is not a certification log (header {lines[0]!r})")
    return [dict(zip(TSV_COLUMNS, line.split("\t"))) for line in lines[1:]]


def certify_images(smooth, x, y, indices, path, n0, n, alpha, seed, progress=True):
    """Certify x[i] for each i in indices, appending one flushed row per image to
    path; images already in the log are skipped, so a rerun resumes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = {int(r["idx"]) for r in read_log(path)}
    todo = [i for i in indices if int(i) not in done]
    progress = Progress(len(todo), f"certify {path.name}", "images") if progress else None
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
            if progress:
                progress.update(k + 1)
    return read_log(path)


def shard_range(indices, shard):
    """The contiguous block of indices of shard 'i/k' (i from 1 to k)."""
    i, k = shard
    size = -(-len(indices) // k)
    return indices[(i - 1) * size:i * size]


def merge_shards(path):
    """Join path's shard logs (<stem>.shard<i>of<k>.tsv) into path, sorted by idx."""
    rows = {int(r["idx"]): r for r in read_log(path)}
    for shard in sorted(path.parent.glob(f"{path.stem}.shard*of*.tsv")):
        rows.update({int(r["idx"]): r for r in read_log(shard)})
    lines = ["\t".join(TSV_COLUMNS)] + ["\t".join(rows[i][c] for c in TSV_COLUMNS) for i in sorted(rows)]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return len(rows)


def certified_accuracy(rows, radius):
    """Correct and certified at radius >= r (abstentions count as wrong)."""
    return accuracy_ci([int(r["correct"]) == 1 and float(r["radius"]) >= radius for r in rows])


# ---------------------------------------------------------------- experiment

def noise_model_name(protocol, sigma):
    return f"{protocol.architecture}_noise{sigma:g}"


def build_noise_model(protocol, sigma):
    """The protocol's CNN behind Keras' GaussianNoise, which adds noise in training only."""
    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.GaussianNoise(sigma), build_model(protocol)],
                            name=noise_model_name(protocol, sigma))


def get_noise_model(ctx, sigma, data, retrain=False):
    """The protocol's CNN trained with Gaussian noise augmentation at sigma."""
    return get_or_train(ctx, noise_model_name(ctx.protocol, sigma), lambda: build_noise_model(ctx.protocol, sigma),
                        data, retrain, extra={"noise_sigma": sigma})


def certify_log_path(results_dir, model_name, sigma, n):
    """The per-image certification log of one model, sigma and n."""
    return Path(results_dir) / "certify" / f"{model_name}_sigma{sigma:g}_n{n}.tsv"


def largest_certify_log(results_dir, model_name, sigma):
    """The certification log of a model and sigma with the largest n; None if none."""
    logs = Path(results_dir, "certify").glob(certify_log_path(results_dir, model_name, sigma, "*").name)
    logs = sorted(logs, key=lambda p: int(p.stem.rsplit("_n", 1)[1]))
    return logs[-1] if logs else None


def certified_log_rows(results_dir, model_name, sigma):
    """(rows, the largest radius their n certifies at the default alpha) of the log with
    the largest n; (None, None) if the model was not certified at sigma."""
    log = largest_certify_log(results_dir, model_name, sigma)
    rows = read_log(log) if log else []
    if not rows:
        return None, None
    return rows, max_certifiable_radius(int(rows[0]["n"]), CERTIFY_ALPHA, sigma)


def noisy_model(base, sigma):
    """The randomized base classifier f(x + noise) whose vote is the smoothed
    classifier: the defense as a gradient-free attacker would query it."""
    return keras.Sequential([keras.Input((28, 28, 1)), GaussianNoiseAlways(sigma), base])


class SoftSmoothed(keras.Model):
    """log of the mean softmax of f(x + noise) over `draws` noise draws per call: the
    smoothed soft classifier whose cross-entropy SmoothAdv ascends (Salman et al. 2019).
    Its output serves as logits, so cross-entropy on it is -log E[softmax_y], stronger
    than averaging the cross-entropy of single draws. The suite's attacks run on it
    unchanged (PGD with its random start and 2.5 eps / steps, APGD with its own
    schedule), not with SmoothAdv's start at delta = 0, step 2 eps / steps and one set of
    draws kept for the whole attack: every call draws fresh noise, so each gradient is an
    unbiased estimate of the smoothed classifier's, which a fixed set of 20 draws, that
    the attack can fit, is not; and "PGD-20" means one configuration everywhere."""
    randomized = True

    def __init__(self, base, sigma, draws, **kwargs):
        super().__init__(**kwargs)
        self.base, self.sigma, self.draws = base, float(sigma), int(draws)

    def call(self, x, training=False):
        n = tf.shape(x)[0]
        noisy = tf.tile(x, [self.draws, 1, 1, 1])
        noisy = noisy + self.sigma * tf.random.normal(tf.shape(noisy))
        probs = tf.nn.softmax(self.base(noisy, training=False))
        return tf.math.log(tf.reduce_mean(tf.reshape(probs, [self.draws, n, -1]), axis=0) + 1e-12)


def smoothed_correct(smooth, x, y, n, alpha, seed):
    """Whether Cohen's PREDICT (n noise draws, level alpha) returns the right class;
    an abstention counts as wrong."""
    return np.array([smooth.predict(x[i], n, alpha, seed + i) == y[i] for i in range(len(y))])


PREDICT_ALPHA = 0.001   # Cohen et al.'s predict.py
PREDICT_N = 1000        # noise draws per PREDICT in the evaluation (chosen by predict_n_table, see its table)


def smoothed_target(model, sigma, n_vote, draws, seed, alpha=PREDICT_ALPHA):
    """How to attack and judge a smoothed classifier: judged by PREDICT (n_vote draws,
    abstention wrong); white-box attacks go through the soft smoothed classifier
    (SmoothAdv's objective, `draws` fresh noise draws per gradient), AutoAttack's rand
    version through the noisy base classifier f(x + noise) with EOT over `draws`."""
    base = base_classifier(model)
    smooth = Smooth(base, sigma)
    noisy = noisy_model(base, sigma)
    return attacks.Target(lambda x, y: smoothed_correct(smooth, x, y, n_vote, alpha, seed),
                          ((f"soft smoothed classifier, {draws} noise draws", SoftSmoothed(base, sigma, draws), 1),),
                          noisy, f"PREDICT, n {n_vote}, alpha {alpha:g}, abstention wrong",
                          randomized_views=(("noisy base classifier", noisy, draws),))


def predict_n_rows(base, sigma, x, y, ns, seed, alpha=PREDICT_ALPHA):
    """PREDICT's accuracy (abstention wrong) at each n of ns on the images x, clean and
    under one attack (PGD-20 at the headline eps through the soft smoothed classifier):
    the measurement PREDICT_N is chosen by."""
    smooth = Smooth(base, sigma)
    x_adv = attacks.crafted(attacks.SUITE["PGD-20"], SoftSmoothed(base, sigma, attacks.EOT_DRAWS), x, y,
                            attacks.HEADLINE_EPS, seed, key=("soft smoothed", sigma, attacks.EOT_DRAWS))
    measures = (("clean", x), (f"PGD-20 @{attacks.HEADLINE_EPS:g}, soft smoothed classifier", x_adv))
    rows = []
    for n in ns:
        for measure, images in measures:
            # stored like an attack's outcome: a run killed here redoes only what it had not finished
            predicted = attacks.OUTCOMES.remember(
                ("PREDICT", model_fingerprint(base), sigma, n, alpha, seed, array_fingerprint(images)),
                lambda: np.array([smooth.predict(images[i], n, alpha, seed + i) for i in range(len(y))]),
                lambda stored: stored.shape == y.shape)
            rows.append({"sigma": sigma, "draws": n, "alpha": alpha, "measure": measure,
                         **accuracy_ci(predicted == y), "abstain_rate": round(float(np.mean(predicted == ABSTAIN)), 4)})
    return rows


PREDICT_SHIFT = 0.01   # a figure may move this much (1 point) when PREDICT's n grows tenfold


def smallest_stable_n(rows, tolerance=None):
    """The smallest n (PREDICT's draws) whose every figure moves by at most `tolerance`
    at the next larger n measured; tolerance None: by at most half that n's 95% interval
    width. The largest n measured if none does. The interval of a few hundred images is
    wider than the one-sided shift that abstentions cause, so PREDICT_N follows the
    fixed tolerance PREDICT_SHIFT; the table's note gives both."""
    ns = sorted({r["draws"] for r in rows})
    figure = {(r["draws"], r["measure"]): r for r in rows}

    def stays(n, larger, measure):
        now, then = figure[(n, measure)], figure[(larger, measure)]
        allowed = tolerance if tolerance is not None else (then["ci_high"] - then["ci_low"]) / 2
        return abs(now["acc"] - then["acc"]) <= allowed
    for n, larger in zip(ns, ns[1:]):
        if all(stays(n, larger, m) for m in {r["measure"] for r in rows}):
            return n
    return ns[-1]


def empirical_rows(label, model, x, y, radii, seed, sigma=0.0, n_vote=PREDICT_N):
    """L2 PGD-20 at each radius against a plain model, or (sigma > 0) against the
    smoothed classifier around it, then judged by PREDICT."""
    target = (smoothed_target(model, sigma, n_vote, attacks.EOT_DRAWS, seed) if sigma
              else attacks.plain_target(model))
    attack = attacks.SUITE["L2 PGD-20"]
    kind = "empirical (L2 PGD-20" + (f" through the {target.describe()}; PREDICT, n {n_vote})" if sigma else ")")
    return [{"model": label, "kind": kind, "radius": radius, "settings": attack.describe(radius) if radius else "",
             **accuracy_ci(target.judge(x, y) if radius == 0 else target.outcome(attack, x, y, radius, seed))}
            for radius in radii]


def curves_title(protocol_name, images):
    return f"Randomized smoothing, {protocol_name} protocol ({images} images)"


def plot_curves(logs, empirical, caps, title, path):
    """Certified accuracy against the L2 radius per sigma (solid, up to what n can
    certify) and L2 PGD-20's accuracy at the radii it was run at (markers)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    grid = np.linspace(0, 2.5, 101)
    for i, (sigma, rows) in enumerate(logs.items()):
        color = f"C{i}"
        reach = grid[grid <= caps[sigma]]   # beyond the cap n samples certify nothing: no curve, not 0%
        ax.plot(reach, [100 * certified_accuracy(rows, r)["acc"] for r in reach], color=color,
                label=f"certified, sigma {sigma:g} ({len(rows)} images)")
        ax.axvline(caps[sigma], color=color, ls="--", lw=0.8, alpha=0.6)
    for j, label in enumerate(dict.fromkeys(r["model"] for r in empirical)):
        sel = [r for r in empirical if r["model"] == label]
        ax.errorbar([r["radius"] for r in sel], [100 * r["acc"] for r in sel], fmt="s:", lw=1, ms=4, capsize=2,
                    color=f"C{j + len(logs)}", label=f"L2 PGD-20: {label}", yerr=error_bars(sel))
    ax.set(xlabel="L2 radius (pixels in [0, 1]); dashed: the largest radius the chosen n can certify",
           ylabel="accuracy (%)", ylim=(0, 100), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    save_figure(fig, path)


def default_samples(quick, sigma):
    """CERTIFY's n: 100,000 for sigma 0.25 (Cohen et al.'s), 10,000 for the others."""
    return 1000 if quick else (100_000 if sigma == 0.25 else 10_000)


def certify_shard(ctx, sigmas, n_images, shard, n0, n, alpha):
    """Certify block i of k of the images (one machine of k); --merge joins them."""
    data = load_data(ctx.protocol, ctx.data_dir, ctx.quick)
    indices = attack_subset(len(data.y_test), n_images)
    for sigma in sigmas:
        n_sigma = n or default_samples(ctx.quick, sigma)
        base = base_classifier(get_noise_model(ctx, sigma, data)[0])
        path = certify_log_path(ctx.results_dir, noise_model_name(ctx.protocol, sigma), sigma, n_sigma)
        shard_path = path.with_name(f"{path.stem}.shard{shard[0]}of{shard[1]}.tsv")
        certify_images(Smooth(base, sigma), data.x_test, data.y_test, shard_range(indices, shard),
                       shard_path, n0, n_sigma, alpha, ctx.seed)
        print(f"wrote {shard_path}; run --merge once every shard is done")


def certified_table(ctx, sigma, n0, n, alpha, rows):
    """Certified accuracy at each radius of RADII from one sigma's log."""
    model = noise_model_name(ctx.protocol, sigma)
    abstain = accuracy_ci([int(r["predict"]) == ABSTAIN for r in rows])
    table = []
    for radius in RADII:
        stats = certified_accuracy(rows, radius)
        table.append({"protocol": ctx.protocol.name, "model": model, "sigma": sigma, "n0": n0, "n_samples": n,
                      "alpha": alpha, "radius": radius, **stats, "abstain_rate": round(abstain["acc"], 4),
                      "max_certifiable_radius": round(max_certifiable_radius(n, alpha, sigma), 3),
                      "mean_seconds_per_image": round(float(np.mean([float(r["time"]) for r in rows])), 3)})
        print(f"  sigma {sigma:g}, radius {radius:.2f}: certified {format_acc(stats)}")
    return table


def certified_pivot(table):
    """Certified accuracy as locuslab/smoothing lays it out: one row per sigma, one column
    per radius, '%' with its exact interval; 'n/a' beyond the largest radius that n
    samples can certify (0% there says nothing about the classifier)."""
    out = []
    for sigma in dict.fromkeys(r["sigma"] for r in table):
        rows = [r for r in table if r["sigma"] == sigma]
        first = rows[0]
        row = {"sigma": f"{sigma:g}", "n (CERTIFY samples)": f"{first['n_samples']:,}",
               "largest certifiable radius": f"{first['max_certifiable_radius']:.2f}",
               "abstains": f"{100 * first['abstain_rate']:.1f}%"}
        for r in rows:
            beyond = r["radius"] > first["max_certifiable_radius"]
            row[f"r = {r['radius']:g}"] = "n/a" if beyond else pct(r)
        out.append(row)
    return out


def certificate_check(row, certified_rows, cap):
    """(certified accuracy, violated) at an empirical row's radius: the smoothed
    classifier's accuracy under attack must not lie significantly below what is
    certified there (its exact 95% upper bound below it; PREDICT's abstentions make a
    small shortfall no violation). At radius 0 (PREDICT against CERTIFY's own
    abstentions) and beyond what n can certify there is nothing to check: ("", "")."""
    if not 0 < row["radius"] <= cap:
        return "", ""
    certified = certified_accuracy(certified_rows, row["radius"])["acc"]
    return round(certified, 4), bool(row["ci_high"] < certified)


def smoothed_label(sigma):
    """The empirical table's name for the smoothed classifier at sigma."""
    return f"smoothed sigma {sigma:g}"


def empirical_table(ctx, data, x, y, sigma, certified_rows, cap):
    """Empirical L2 robustness beside the certificate: the undefended CNN, the
    noise-trained CNN without smoothing, and the smoothed classifier, which must
    never fall significantly below its certified accuracy."""
    empirical = empirical_rows("undefended CNN", get_base_model(ctx, data)[0], x, y, RADII, ctx.seed)
    noise_base = base_classifier(get_noise_model(ctx, sigma, data)[0])
    empirical += empirical_rows(f"noise-trained CNN sigma {sigma:g}, no smoothing", noise_base, x, y, RADII, ctx.seed)
    empirical += empirical_rows(smoothed_label(sigma), noise_base, x, y, RADII, ctx.seed, sigma=sigma)
    for r in empirical:
        r["certified_acc"], r["violation"] = (certificate_check(r, certified_rows, cap)
                                              if r["model"] == smoothed_label(sigma) else ("", ""))
        if r["violation"]:
            print(f"  WARNING: empirical {format_acc(r)} below certified {100 * r['certified_acc']:.1f}% "
                  f"at radius {r['radius']:g}")
    return empirical


PREDICT_NS = {"standard": (100, 1_000, 10_000), "quick": (20, 100, 1_000)}   # the n that predict_n_table compares


def predict_n_table(ctx, data, sigmas, indices):
    """PREDICT at each n of PREDICT_NS on the certified images, for every sigma, and the
    smallest n that the rule of smallest_stable_n accepts (written in the table's note;
    the evaluation judges with PREDICT_N, and a run says so where the two differ)."""
    ns = PREDICT_NS["quick" if ctx.quick else "standard"]
    x, y = data.x_test[indices], data.y_test[indices]
    rows, chosen, loose = [], {}, {}
    for sigma in sigmas:
        print(f"PREDICT at n = {', '.join(map(str, ns))} on {len(y)} images, sigma {sigma:g}")
        base = base_classifier(get_noise_model(ctx, sigma, data)[0])
        sigma_rows = predict_n_rows(base, sigma, x, y, ns, ctx.seed)
        chosen[sigma], loose[sigma] = smallest_stable_n(sigma_rows, PREDICT_SHIFT), smallest_stable_n(sigma_rows)
        rows += sigma_rows
        for r in sigma_rows:
            print(f"  n {r['draws']:>6,} {r['measure']}: {format_acc(r)}, abstains {100 * r['abstain_rate']:.1f}%")
    needed = max(chosen.values())
    note = (f"The smallest n whose figures move by at most {100 * PREDICT_SHIFT:g} point at the next larger n: "
            + ", ".join(f"sigma {s:g}: {n:,}" for s, n in chosen.items()) +
            " (by at most half the next n's 95% interval width, a yardstick wider than the one-sided shift of "
            "abstentions: " + ", ".join(f"sigma {s:g}: {n:,}" for s, n in loose.items()) +
            f"). The evaluation judges every smoothed classifier with PREDICT at n {PREDICT_N:,}, alpha "
            f"{PREDICT_ALPHA:g}" + ("." if needed <= PREDICT_N else
                                   f", less than this run's measurement asks for ({needed:,})."))
    if needed > PREDICT_N and not ctx.quick:
        print(f"WARNING: PREDICT_N ({PREDICT_N:,}) is below the n this measurement chooses ({needed:,})")
    write_table(rows, ctx.results_dir / "certified_robustness_predict_n", note=note,
                title=f"PREDICT (Cohen et al.; abstention wrong) at each n on the {len(y)} certified test images, "
                      f"clean and under PGD-20 (L-inf {attacks.HEADLINE_EPS:g}, {attacks.EOT_DRAWS} noise draws per "
                      f"gradient), seed {ctx.seed} (exact 95% intervals)")


def run_certification(ctx, sigmas, n_images, n0, n, alpha, merge=False, retrain=False):
    """Certify (or, with merge, join the shard logs of) every sigma; then the tables,
    the empirical attack beside the certificate, and the plot."""
    data = load_data(ctx.protocol, ctx.data_dir, ctx.quick)
    indices = attack_subset(len(data.y_test), n_images)
    logs, caps, table = {}, {}, []
    for sigma in sigmas:
        n_sigma = n or default_samples(ctx.quick, sigma)
        base = base_classifier(get_noise_model(ctx, sigma, data, retrain)[0])
        path = certify_log_path(ctx.results_dir, noise_model_name(ctx.protocol, sigma), sigma, n_sigma)
        if retrain and path.exists():   # the log certified the old model
            path.unlink()
        if merge:
            print(f"merged {merge_shards(path)} images into {path}")
        else:
            print(f"certifying {len(indices)} images, sigma {sigma:g}, n0 {n0}, n {n_sigma:,}, alpha {alpha}")
            certify_images(Smooth(base, sigma), data.x_test, data.y_test, indices, path, n0, n_sigma, alpha, ctx.seed)
        logs[sigma] = [r for r in read_log(path) if int(r["idx"]) in set(indices.tolist())]
        caps[sigma] = max_certifiable_radius(n_sigma, alpha, sigma)
        table += certified_table(ctx, sigma, n0, n_sigma, alpha, logs[sigma])
    x, y = data.x_test[indices], data.y_test[indices]
    chosen = 0.25 if 0.25 in logs else sigmas[0]
    empirical = empirical_table(ctx, data, x, y, chosen, logs[chosen], caps[chosen])
    write_table(empirical, ctx.results_dir / "certified_robustness_empirical",
                title=f"Empirical L2 robustness on the same {len(y)} images (exact 95% intervals)")
    plot_curves(logs, empirical, caps, curves_title(ctx.protocol.name, len(indices)),
                ctx.results_dir / "certified_accuracy.png")
    predict_n_table(ctx, data, sigmas, indices)
    # the stage's make target, so written last: a run killed before it redoes the stage
    write_table(table, ctx.results_dir / "certified_robustness", markdown_rows=certified_pivot(table),
                title=f"Certified accuracy (%) of the smoothed {ctx.protocol.architecture} at each L2 radius r, "
                      f"{len(indices)} test images, {ctx.protocol.name} protocol, seed {ctx.seed}, n0 {n0}, "
                      f"alpha {alpha:g} (exact 95% intervals; abstentions count as wrong)",
                note="n/a: beyond the largest radius n samples can certify at this alpha (sigma x "
                     "PhiInv(alpha^(1/n))), where every image would count as 0% whatever the classifier.")
    print(f"wrote {ctx.results_dir / 'certified_robustness.csv'}, ..._empirical.csv, ..._predict_n.csv, "
          "certified_accuracy.png")


def main():
    parser = build_parser()
    args, ctx = parse_args(parser)
    attacks.remember_outcomes(ctx.results_dir / ".outcomes")
    if ctx.protocol.name != "standard":
        parser.error("certification runs in the standard protocol only (the study's CNN would need about a "
                     "minute per image at n = 100,000, and the study did not certify)")
    if args.samples is not None and args.n0 > args.samples:
        parser.error(f"--n0 ({args.n0}) must not exceed --samples ({args.samples})")
    if not 0 < args.alpha < 1:
        parser.error(f"--alpha must lie in (0, 1), got {args.alpha}")
    n_images, sigmas = args.images or (20 if ctx.quick else 500), args.sigmas or SIGMAS
    if args.retrain and (args.shard or args.merge):
        parser.error("--retrain cannot go with --shard or --merge: every shard must certify the same model")
    if args.shard:
        certify_shard(ctx, sigmas, n_images, args.shard, args.n0, args.samples, args.alpha)
    else:
        run_certification(ctx, sigmas, n_images, args.n0, args.samples, args.alpha, args.merge, args.retrain)


if __name__ == "__main__":
    run_main(main)
