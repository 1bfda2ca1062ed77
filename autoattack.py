"""AutoAttack's attacks (Croce & Hein, ICML 2020), L-inf: APGD, PGD with a step size that
adapts itself (halved at fixed checkpoints when the loss stalls) and momentum, with the
cross-entropy or the DLR loss; its targeted version APGD-T over the top-k other
classes; and the gradient-free Square attack (Andriushchenko et al., ECCV 2020). Batched
and compiled like gradient_attacks.pgd, clipped to [0, 1], deterministic under a seed.
Which settings the suite runs them with is decided in attacks.py."""
import math

import numpy as np

from gradient_attacks import _batches, _check, loss_and_gradient, per_example_loss
from model import tf

APGD_MOMENTUM = 0.75        # weight of the new step; 1 - this is the previous step's
APGD_SUCCESS_RATE = 0.75    # a checkpoint halves the step if at most this share of its steps raised the loss


def apgd_checkpoints(iterations):
    """(iteration, window) pairs at which APGD checks its progress: the first after
    22% of the iterations, each window 3% shorter than the one before, none shorter
    than 6% (Croce & Hein 2020, section 3.2; integer steps as in their code)."""
    window = max(int(0.22 * iterations), 1)
    shrink, shortest = max(int(0.03 * iterations), 1), max(int(0.06 * iterations), 1)
    checkpoints, at = [], window
    while at <= iterations:
        checkpoints.append((at, window))
        window = max(window - shrink, shortest)
        at += window
    return checkpoints


def _project(x, x_adv, eps):
    return tf.clip_by_value(tf.clip_by_value(x_adv, x - eps, x + eps), 0.0, 1.0)


@tf.function(reduce_retracing=True)
def _apgd_start(model, x, y, target, eps, seed, loss, eot_samples):
    """A random start whose largest coordinate sits on the ball's surface, and the loss,
    gradient and prediction there."""
    t = tf.random.stateless_uniform(tf.shape(x), seed, -1.0, 1.0)
    t = t / tf.reduce_max(tf.abs(t), axis=[1, 2, 3], keepdims=True)
    x_adv = tf.clip_by_value(x + eps * t, 0.0, 1.0)
    losses, grad, logits = loss_and_gradient(model, x_adv, y, loss, eot_samples, target)
    return x_adv, losses, grad, tf.not_equal(tf.argmax(logits, axis=1, output_type=tf.int32), y)


@tf.function(reduce_retracing=True)
def _apgd_iteration(model, x, y, target, x_adv, x_prev, grad, step, momentum, eps, best, loss, eot_samples):
    """One APGD step: a sign step of the current size, mixed with the previous step
    (momentum), projected; then the loss there, and the best point and the latest
    misclassified point kept. best = (x_max, loss_max, grad_max, x_found, found)."""
    z = _project(x, x_adv + step * tf.sign(grad), eps)
    x_new = _project(x, x_adv + momentum * (z - x_adv) + (1.0 - momentum) * (x_adv - x_prev), eps)
    losses, grad_new, logits = loss_and_gradient(model, x_new, y, loss, eot_samples, target)
    wrong = tf.not_equal(tf.argmax(logits, axis=1, output_type=tf.int32), y)
    x_max, loss_max, grad_max, x_found, found = best
    improved = losses > loss_max
    pick = lambda mask, a, b: tf.where(mask[:, None, None, None], a, b)  # noqa: E731
    best = (pick(improved, x_new, x_max), tf.maximum(losses, loss_max), pick(improved, grad_new, grad_max),
            pick(wrong, x_new, x_found), found | wrong)
    return x_new, grad_new, losses, best


def _apgd_batch(model, x, y, target, eps, iterations, loss, seed, eot_samples):
    """APGD on one batch (tensors); returns (x_adv, misclassified by the model)."""
    eps_t = tf.constant(eps, tf.float32)
    x_adv, losses, grad, wrong = _apgd_start(model, x, y, target, eps_t, seed, loss, eot_samples)
    best = (x_adv, losses, grad, x_adv, wrong)
    x_prev, step = x_adv, tf.fill([tf.shape(x)[0], 1, 1, 1], 2.0 * eps)
    history = [losses]                  # the loss after each iteration, the start first
    checkpoints = dict(apgd_checkpoints(iterations))
    reduced_before = tf.zeros_like(wrong)
    loss_max_before = losses
    for i in range(iterations):
        momentum = tf.constant(1.0 if i == 0 else APGD_MOMENTUM)
        x_new, grad, losses, best = _apgd_iteration(model, x, y, target, x_adv, x_prev, grad, step, momentum,
                                                    eps_t, best, loss, eot_samples)
        x_prev, x_adv = x_adv, x_new
        history.append(losses)
        window = checkpoints.get(i + 1)
        if window is None:
            continue
        # halve the step where few of the window's steps raised the loss, or where the
        # step was not halved last time and the best loss has not moved since
        raised = tf.add_n([tf.cast(history[-j] > history[-j - 1], tf.float32) for j in range(1, window + 1)])
        loss_max = best[1]
        reduce = (raised <= APGD_SUCCESS_RATE * window) | (~reduced_before & (loss_max_before >= loss_max))
        reduced_before, loss_max_before = reduce, loss_max
        mask = reduce[:, None, None, None]
        step = tf.where(mask, step / 2.0, step)
        x_adv = tf.where(mask, best[0], x_adv)       # restart from the best point found
        grad = tf.where(mask, best[2], grad)
    x_max, _, _, x_found, found = best
    return tf.where(found[:, None, None, None], x_found, x_max).numpy(), found.numpy()


def apgd(model, x, y, *, eps, iterations=100, loss="ce", seed=0, eot_samples=1, batch_size=500):
    """APGD (untargeted) with the cross-entropy ("ce") or DLR ("dlr") loss, one run
    from a random start. Returns, per image, the latest point the model misclassified,
    or the point of highest loss where it never did."""
    x, y = _check(x, y, eps)
    out = x.copy()
    for batch, (lo, hi) in enumerate(_batches(len(x), batch_size)):
        seed_pair = tf.constant([seed, batch], dtype=tf.int32)
        yb = tf.constant(y[lo:hi])
        out[lo:hi], _ = _apgd_batch(model, tf.constant(x[lo:hi]), yb, yb, eps, iterations, loss, seed_pair,
                                    int(eot_samples))
    return out


@tf.function(reduce_retracing=True)
def _mean_logits(model, x, eot_samples):
    x_rep = tf.concat([x] * eot_samples, axis=0) if eot_samples > 1 else x
    logits = model(x_rep, training=False)
    return tf.reduce_mean(tf.reshape(logits, [eot_samples, tf.shape(x)[0], -1]), axis=0)


def apgd_targeted(model, x, y, *, eps, target_classes=9, iterations=100, seed=0, eot_samples=1, batch_size=500):
    """APGD-T: APGD on the targeted DLR loss, once per target class, the clean image's
    2nd, 3rd, ... most likely classes in turn, each run on the images that no earlier
    target broke. Returns each image's first misclassified point, else its last run's."""
    x, y = _check(x, y, eps)
    out = x.copy()
    for batch, (lo, hi) in enumerate(_batches(len(x), batch_size)):
        xb, yb = x[lo:hi], y[lo:hi]
        ranked = np.argsort(-_mean_logits(model, tf.constant(xb), int(eot_samples)).numpy(), axis=1)
        broken = np.zeros(len(yb), dtype=bool)
        for rank in range(1, min(target_classes, ranked.shape[1] - 1) + 1):
            todo = np.flatnonzero(~broken)
            if not len(todo):
                break
            x_adv, wrong = _apgd_batch(model, tf.constant(xb[todo]), tf.constant(yb[todo]),
                                       tf.constant(ranked[todo, rank].astype(np.int32)), eps, iterations,
                                       "dlr_targeted", tf.constant([seed, batch], dtype=tf.int32), int(eot_samples))
            out[lo:hi][todo] = x_adv
            broken[todo] = wrong
    return out


# ------------------------------------------------------------------------ Square

def square_fraction(query, queries, p_init):
    """Share of the image's pixels the Square attack changes at a query: p_init, halved
    at fixed points of a 10,000-query schedule stretched to the budget."""
    scaled = int(query / queries * 10000)
    halvings = sum(scaled > limit for limit in (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000))
    return p_init / 2 ** halvings


@tf.function(reduce_retracing=True)
def _margins(model, x, y):
    """True logit minus the best other one: negative once the image is misclassified."""
    return -per_example_loss(model(x, training=False), y, "margin")


@tf.function(reduce_retracing=True)
def _square_step(model, x, x_best, margin, y, rows, cols, size, signs, eps):
    """Try one random square per image: set it to x +- eps (the other sign where that
    would change nothing), keep the result where the margin fell."""
    height, width = tf.shape(x)[1], tf.shape(x)[2]
    r = tf.range(height)[None, :, None, None]
    c = tf.range(width)[None, None, :, None]
    inside = ((r >= rows[:, None, None, None]) & (r < rows[:, None, None, None] + size) &
              (c >= cols[:, None, None, None]) & (c < cols[:, None, None, None] + size))
    inside_f = tf.cast(inside, tf.float32)

    def candidate(s):
        return tf.where(inside, tf.clip_by_value(x + eps * s, 0.0, 1.0), x_best)
    new = candidate(signs)
    unchanged = tf.reduce_sum(tf.abs(new - x_best) * inside_f, axis=[1, 2, 3]) < 1e-7
    new = tf.where(unchanged[:, None, None, None], candidate(-signs), new)
    new_margin = _margins(model, new, y)
    better = new_margin < margin
    return tf.where(better[:, None, None, None], new, x_best), tf.minimum(new_margin, margin)


def square(model, x, y, *, eps, queries=5000, p_init=0.8, seed=0, batch_size=500):
    """The Square attack (L-inf): a random-search attack that only queries the model's
    outputs, so gradient masking does not stop it. Starts from vertical stripes of
    +-eps and then changes one random square per query, kept where the margin falls;
    an image stops once misclassified. At most `queries` model calls per image."""
    x, y = _check(x, y, eps)
    out = x.copy()
    _, height, width, channels = x.shape
    eps_t = tf.constant(eps, tf.float32)
    for batch, (lo, hi) in enumerate(_batches(len(x), batch_size)):
        rng = np.random.default_rng([seed, batch])
        xb, yb = x[lo:hi], y[lo:hi]
        stripes = rng.choice([-1.0, 1.0], size=(len(yb), 1, width, channels)).astype(np.float32)
        x_best = np.clip(xb + eps * stripes, 0.0, 1.0)
        margin = _margins(model, tf.constant(x_best), tf.constant(yb)).numpy()
        for query in range(1, queries):
            active = np.flatnonzero(margin > 0)
            if not len(active):
                break
            p = square_fraction(query, queries, p_init)
            size = min(max(int(round(math.sqrt(p * height * width))), 1), height - 1)
            rows = rng.integers(0, height - size, size=len(active)).astype(np.int32)
            cols = rng.integers(0, width - size, size=len(active)).astype(np.int32)
            signs = rng.choice([-1.0, 1.0], size=(len(active), 1, 1, channels)).astype(np.float32)
            new_best, new_margin = _square_step(model, tf.constant(xb[active]), tf.constant(x_best[active]),
                                                tf.constant(margin[active]), tf.constant(yb[active]),
                                                tf.constant(rows), tf.constant(cols), tf.constant(size),
                                                tf.constant(signs), eps_t)
            x_best[active], margin[active] = new_best.numpy(), new_margin.numpy()
        out[lo:hi] = x_best
    return out
