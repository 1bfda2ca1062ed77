"""The gradient attacks: FGSM, PGD (L-inf and L2, random start, restarts, EOT) and the
study's iterative FGSM-k, with the losses they ascend. Each is `attack(model, x, y, *,
eps, ...) -> x_adv`: batched, compiled with tf.function, deterministic under a seed,
clipped to [0, 1], and never changes the model. Which settings each named attack uses
is decided once, in suite.py."""
import numpy as np

from fashion_defenses.data import STUDY_EPS
from fashion_defenses.framework import tf

STUDY_STEP = 8 / 255     # its step
STUDY_MAX_STEPS = 100
STUDY_CONFIDENCE = 0.8   # it stops once misclassified with at least this confidence

KERAS_EPSILON = 1e-7     # Keras clips probabilities to [eps, 1 - eps] in its cross-entropy
LOSSES = {"ce": "cross-entropy on logits",
          "study": "the study's: cross-entropy on softmax probabilities clipped to [1e-7, 1 - 1e-7]",
          "margin": "margin (best wrong logit - true logit)",
          "dlr": "DLR (Croce & Hein 2020: margin over the spread of the top logits)",
          "dlr_targeted": "targeted DLR (true logit vs one target class)"}


def per_example_loss(logits, y, loss="ce", target=None):
    """Loss the attacker maximises: cross-entropy on the logits; "study", the study's
    loss (Keras' cross-entropy on the softmax output, whose clipping gives an image the
    model is nearly certain of a zero gradient); the margin (best wrong logit minus
    true logit, Carlini-Wagner) which does not saturate; DLR and targeted DLR (Croce &
    Hein 2020: the margin divided by the spread of the sorted logits, so that it does
    not change when the logits are scaled; target holds the target classes); or "kl":
    the KL divergence from reference probabilities passed as y (TRADES' inner
    maximisation)."""
    if loss == "kl":
        return tf.reduce_sum(y * (tf.math.log(y + 1e-12) - tf.nn.log_softmax(logits)), axis=1)
    y = tf.cast(y, tf.int32)
    if loss == "ce":
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
    if loss == "study":
        probs = tf.clip_by_value(tf.nn.softmax(logits), KERAS_EPSILON, 1.0 - KERAS_EPSILON)
        return -tf.math.log(tf.gather(probs, y, axis=1, batch_dims=1))
    true = tf.one_hot(y, tf.shape(logits)[1], dtype=logits.dtype)
    true_logit = tf.reduce_sum(logits * true, axis=1)
    best_other = tf.reduce_max(logits - 1e9 * true, axis=1)
    if loss == "margin":
        return best_other - true_logit
    top = tf.math.top_k(logits, k=4).values
    if loss == "dlr":
        return (best_other - true_logit) / (top[:, 0] - top[:, 2] + 1e-12)
    if loss == "dlr_targeted":
        target_logit = tf.gather(logits, tf.cast(target, tf.int32), axis=1, batch_dims=1)
        return (target_logit - true_logit) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)
    raise ValueError(f"unknown loss {loss!r}: use one of {', '.join(LOSSES)}")


def loss_and_gradient(model, x, y, loss, eot_samples, target=None, single_draw=False):
    """Per-example loss, its gradient with respect to the input and the logits, each
    averaged over eot_samples draws of a randomized model (the batch is repeated so
    that the model draws its randomness per copy); the gradient is the mean of the
    per-draw losses' gradients. single_draw: the loss and logits of one draw instead of
    the mean (AutoAttack's rand version judges success on single forward passes).
    Meant to run inside tf.function."""
    x_rep = tf.concat([x] * eot_samples, axis=0) if eot_samples > 1 else x
    y_rep = tf.concat([y] * eot_samples, axis=0) if eot_samples > 1 else y
    t_rep = tf.concat([target] * eot_samples, axis=0) if eot_samples > 1 and target is not None else target
    with tf.GradientTape() as tape:
        tape.watch(x_rep)
        logits = model(x_rep, training=False)
        losses = per_example_loss(logits, y_rep, loss, t_rep)
        total = tf.reduce_sum(losses)
    # a model with no gradient path to its input (gradient masking) gets a zero
    # gradient, not an error: the attack then fails visibly and the checks say so
    grad = tape.gradient(total, x_rep, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    if eot_samples > 1:
        mean = lambda t: tf.reduce_mean(tf.reshape(t, tf.concat([[eot_samples], tf.shape(t)[:1] // eot_samples,  # noqa: E731
                                                                  tf.shape(t)[1:]], 0)), axis=0)
        if single_draw:
            n = tf.shape(x)[0]
            return losses[:n], mean(grad), logits[:n]
        return mean(losses), mean(grad), mean(logits)
    return losses, grad, logits


def _input_gradient(model, x, y, loss, eot_samples):
    """Gradient of the loss with respect to the input (averaged over EOT draws)."""
    return loss_and_gradient(model, x, y, loss, eot_samples)[1]


def _l2_norm(t):
    return tf.sqrt(tf.reduce_sum(tf.square(t), axis=[1, 2, 3], keepdims=True) + 1e-12)


def _project(delta, eps, norm):
    if norm == "linf":
        return tf.clip_by_value(delta, -eps, eps)
    return delta * tf.minimum(1.0, eps / _l2_norm(delta))


def _random_start(shape, eps, norm, seed):
    if norm == "linf":
        return tf.random.stateless_uniform(shape, seed, -eps, eps)
    # uniform in the L2 ball: a Gaussian direction, radius eps * U^(1/d)
    direction = tf.random.stateless_normal(shape, seed)
    dims = tf.cast(tf.reduce_prod(shape[1:]), tf.float32)
    radius = eps * tf.random.stateless_uniform([shape[0], 1, 1, 1], seed + 1) ** (1.0 / dims)
    return direction / _l2_norm(direction) * radius


@tf.function(reduce_retracing=True)
def pgd_start(x, eps, seed, norm, random_start):
    """Initial perturbation: zero, or uniform in the ball (stateless, from a seed pair)."""
    delta = _random_start(tf.shape(x), eps, norm, seed) if random_start else tf.zeros_like(x)
    return tf.clip_by_value(x + delta, 0.0, 1.0) - x


@tf.function(reduce_retracing=True)
def pgd_step(model, x, delta, y, eps, step_size, norm, loss, eot_samples):
    """One ascent step on the perturbation, projected on the ball and on [0, 1].
    (A Python loop over this compiled step runs at the speed of bare gradient
    passes; a tf.while_loop over it was up to 1.7x slower on a CPU.)"""
    grad = _input_gradient(model, x + delta, y, loss, eot_samples)
    if norm == "linf":
        delta = delta + step_size * tf.sign(grad)
    else:
        delta = delta + step_size * grad / _l2_norm(grad)
    delta = _project(delta, eps, norm)
    return tf.clip_by_value(x + delta, 0.0, 1.0) - x


@tf.function(reduce_retracing=True)
def _loss_and_correct(model, x, y, loss):
    logits = model(x, training=False)
    correct = tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), tf.cast(y, tf.int32))
    return per_example_loss(logits, y, loss), correct


def batches(n, batch_size):
    for start in range(0, n, batch_size):
        yield start, min(start + batch_size, n)


def check_inputs(x, y, eps):
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    if x.ndim != 4 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x must be (N, H, W, C) with one label per image, got {x.shape} and {y.shape}")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ValueError("pixels must lie in [0, 1]")
    return x, y.astype(np.int32)


def pgd(model, x, y, *, eps, norm="linf", steps=20, step_size=None, random_start=True,
        restarts=1, eot_samples=1, loss="ce", seed=0, batch_size=500):
    """Projected gradient ascent on the loss within an L-inf or L2 ball of radius eps.

    step_size defaults to 2.5 * eps / steps (Madry et al.). With restarts > 1 each
    example keeps its worst case over the restarts: misclassified beats correctly
    classified, then the higher loss wins. eot_samples > 1 averages the gradient over
    that many draws of a randomized model (EOT, Athalye et al. 2018)."""
    if norm not in ("linf", "l2"):
        raise ValueError(f"unknown norm {norm!r}: use 'linf' or 'l2'")
    if steps < 1 or restarts < 1 or eot_samples < 1:
        raise ValueError("steps, restarts and eot_samples must be >= 1")
    x, y = check_inputs(x, y, eps)
    step_size = 2.5 * eps / steps if step_size is None else step_size
    best = x.copy()
    for restart in range(restarts):
        for batch, (lo, hi) in enumerate(batches(len(x), batch_size)):
            xb, yb = tf.constant(x[lo:hi]), tf.constant(y[lo:hi])
            seed_pair = tf.constant([seed, restart * 1_000_003 + batch], dtype=tf.int32)
            eps_t, step_t = tf.constant(eps, tf.float32), tf.constant(step_size, tf.float32)
            delta = pgd_start(xb, eps_t, seed_pair, norm, bool(random_start))
            for _ in range(steps):
                delta = pgd_step(model, xb, delta, yb, eps_t, step_t, norm, loss, int(eot_samples))
            x_adv = xb + delta
            if restart == 0:
                best[lo:hi] = x_adv.numpy()
                continue
            new_loss, new_correct = _loss_and_correct(model, x_adv, yb, loss)
            old_loss, old_correct = _loss_and_correct(model, tf.constant(best[lo:hi]), yb, loss)
            new_correct, old_correct = new_correct.numpy(), old_correct.numpy()
            better = (~new_correct & old_correct) | ((new_correct == old_correct) &
                                                     (new_loss.numpy() > old_loss.numpy()))
            best[lo:hi][better] = x_adv.numpy()[better]
    return best


def fgsm(model, x, y, *, eps, loss="ce", batch_size=500, seed=0):
    """Fast gradient sign method (Goodfellow et al. 2015): one step of size eps."""
    return pgd(model, x, y, eps=eps, norm="linf", steps=1, step_size=eps, random_start=False,
               loss=loss, batch_size=batch_size, seed=seed)


@tf.function(reduce_retracing=True)
def _fgsm_k_step(model, x, x_adv, y, eps, step_size, confidence, loss, first, eot_samples):
    """One step of the study's FGSM-k. Like the study, it always takes the first step
    and then stops an image once the step before left it misclassified with enough
    confidence. Returns the new images and that 'done' mask."""
    _, grad, logits = loss_and_gradient(model, x_adv, y, loss, eot_samples)
    wrong = tf.not_equal(tf.argmax(logits, axis=1, output_type=tf.int32), y)
    done = wrong & (tf.reduce_max(tf.nn.softmax(logits), axis=1) >= confidence) & tf.logical_not(first)
    stepped = x_adv + step_size * tf.sign(grad)
    stepped = tf.clip_by_value(tf.clip_by_value(stepped, x - eps, x + eps), 0.0, 1.0)
    stepped = tf.round(stepped * 255.0) / 255.0
    return tf.where(done[:, None, None, None], x_adv, stepped), done


def fgsm_k(model, x, y, *, eps=STUDY_EPS, step_size=STUDY_STEP, max_steps=STUDY_MAX_STEPS,
           confidence=STUDY_CONFIDENCE, loss="ce", eot_samples=1, batch_size=500):
    """The study's iterative FGSM in [0, 1] units: steps of 8/255 within 20/255, pixels
    rounded to the 1/255 grid (the study cast to integers), each image stopping once it
    is misclassified with softmax confidence >= 0.8. loss="study" is the study's own
    gradient (see per_example_loss); "ce" the stronger logit loss. Deterministic for a
    deterministic model; against a randomized one the gradient and the confidence are
    averaged over eot_samples draws."""
    x, y = check_inputs(x, y, eps)
    out = np.empty_like(x)
    eps_t, step_t = tf.constant(eps, tf.float32), tf.constant(step_size, tf.float32)
    confidence_t = tf.constant(confidence, tf.float32)
    for lo, hi in batches(len(x), batch_size):
        xb, yb = tf.constant(x[lo:hi]), tf.constant(y[lo:hi])
        x_adv = xb
        for step in range(max_steps):
            x_adv, done = _fgsm_k_step(model, xb, x_adv, yb, eps_t, step_t, confidence_t, loss,
                                       tf.constant(step == 0), int(eot_samples))
            if bool(tf.reduce_all(done)):
                break
        out[lo:hi] = x_adv.numpy()
    return out
