"""Randomized smoothing (Cohen, Rosenfeld & Kolter 2019) as a defense: the noise
layer and noise-trained CNN, the smoothed classifier's PREDICT and CERTIFY, the soft
smoothed classifier an attacker differentiates, and how a smoothed defense is
attacked and judged."""
import time
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from fashion_defenses.attacks import suite
from fashion_defenses.attacks.outcome_store import array_fingerprint, model_fingerprint
from fashion_defenses.defenses.certificates import (
    ABSTAIN,
    PREDICT_ALPHA,
    PREDICT_N,
    TSV_COLUMNS,
    certified_radius,
    check_parameters,
    noise_model_name,
    read_log,
)
from fashion_defenses.framework import keras, tf
from fashion_defenses.models import base_classifier, build_model, get_or_train
from fashion_defenses.reporting import Progress, accuracy_ci


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


def build_noise_model(protocol, sigma):
    """The protocol's CNN behind Keras' GaussianNoise, which adds noise in training only."""
    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.GaussianNoise(sigma), build_model(protocol)],
                            name=noise_model_name(protocol, sigma))


def get_noise_model(ctx, sigma, data, retrain=False):
    """The protocol's CNN trained with Gaussian noise augmentation at sigma."""
    return get_or_train(ctx, noise_model_name(ctx.protocol, sigma), lambda: build_noise_model(ctx.protocol, sigma),
                        data, retrain, extra={"noise_sigma": sigma})


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


def smoothed_target(model, sigma, n_vote, draws, seed, alpha=PREDICT_ALPHA):
    """How to attack and judge a smoothed classifier: judged by PREDICT (n_vote draws,
    abstention wrong); white-box attacks go through the soft smoothed classifier
    (SmoothAdv's objective, `draws` fresh noise draws per gradient), AutoAttack's rand
    version through the noisy base classifier f(x + noise) with EOT over `draws`."""
    base = base_classifier(model)
    smooth = Smooth(base, sigma)
    noisy = noisy_model(base, sigma)
    return suite.Target(lambda x, y: smoothed_correct(smooth, x, y, n_vote, alpha, seed),
                          ((f"soft smoothed classifier, {draws} noise draws", SoftSmoothed(base, sigma, draws), 1),),
                          noisy, f"PREDICT (n {n_vote}, alpha {alpha:g}; abstention wrong)",
                          randomized_views=(("noisy base classifier", noisy, draws),))


def predict_n_rows(base, sigma, x, y, ns, seed, alpha=PREDICT_ALPHA):
    """PREDICT's accuracy (abstention wrong) at each n of ns on the images x, clean and
    under one attack (PGD-20 at the headline eps through the soft smoothed classifier):
    the measurement PREDICT_N is chosen by."""
    smooth = Smooth(base, sigma)
    x_adv = suite.crafted(suite.SUITE["PGD-20"], SoftSmoothed(base, sigma, suite.EOT_DRAWS), x, y,
                            suite.HEADLINE_EPS, seed, key=("soft smoothed", sigma, suite.EOT_DRAWS))
    measures = (("clean", x), (f"PGD-20 @{suite.HEADLINE_EPS:g}, soft smoothed classifier", x_adv))
    rows = []
    for n in ns:
        for measure, images in measures:
            # stored like an attack's outcome: a run killed here redoes only what it had not finished
            predicted = suite.OUTCOMES.remember(
                ("PREDICT", model_fingerprint(base), sigma, n, alpha, seed, array_fingerprint(images)),
                lambda: np.array([smooth.predict(images[i], n, alpha, seed + i) for i in range(len(y))]),
                lambda stored: stored.shape == y.shape)
            rows.append({"sigma": sigma, "draws": n, "alpha": alpha, "measure": measure,
                         **accuracy_ci(predicted == y), "abstain_rate": round(float(np.mean(predicted == ABSTAIN)), 4)})
    return rows


def empirical_rows(label, model, x, y, radii, seed, sigma=0.0, n_vote=PREDICT_N):
    """L2 PGD-20 at each radius against a plain model, or (sigma > 0) against the
    smoothed classifier around it, then judged by PREDICT."""
    target = (smoothed_target(model, sigma, n_vote, suite.EOT_DRAWS, seed) if sigma
              else suite.plain_target(model))
    attack = suite.SUITE["L2 PGD-20"]
    kind = "empirical (L2 PGD-20" + (f" through the {target.describe()}; PREDICT, n {n_vote})" if sigma else ")")
    return [{"model": label, "kind": kind, "radius": radius, "settings": attack.describe(radius) if radius else "",
             **accuracy_ci(target.judge(x, y) if radius == 0 else target.outcome(attack, x, y, radius, seed))}
            for radius in radii]
