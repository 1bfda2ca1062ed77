"""AutoAttack's attacks (Croce & Hein, ICML 2020), L-inf: APGD, PGD with a step size that
adapts itself (halved at fixed checkpoints when the loss stalls) and momentum, with the
cross-entropy or the DLR loss; its targeted version APGD-T over the top-k other
classes; FAB-T, the targeted fast adaptive boundary attack (Croce & Hein, ICML 2020),
which looks for the smallest L-inf perturbation that crosses the linearised decision
boundary towards each of the top-k other classes; and the gradient-free Square attack
(Andriushchenko et al., ECCV 2020). Batched and compiled like gradient_attacks.pgd,
clipped to [0, 1], deterministic under a seed. Which settings the suite runs them with
is decided in suite.py."""
import math

import numpy as np

from fashion_defenses.attacks.gradient import batches, check_inputs, loss_and_gradient, per_example_loss
from fashion_defenses.framework import tf

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
def _apgd_start(model, x, y, target, eps, seed, loss, eot_samples, single_draw):
    """A random start whose largest coordinate sits on the ball's surface, and the loss,
    gradient and prediction there."""
    t = tf.random.stateless_uniform(tf.shape(x), seed, -1.0, 1.0)
    t = t / tf.reduce_max(tf.abs(t), axis=[1, 2, 3], keepdims=True)
    x_adv = tf.clip_by_value(x + eps * t, 0.0, 1.0)
    losses, grad, logits = loss_and_gradient(model, x_adv, y, loss, eot_samples, target, single_draw)
    return x_adv, losses, grad, tf.not_equal(tf.argmax(logits, axis=1, output_type=tf.int32), y)


@tf.function(reduce_retracing=True)
def _apgd_iteration(model, x, y, target, x_adv, x_prev, grad, step, momentum, eps, best, loss, eot_samples,
                    single_draw):
    """One APGD step: a sign step of the current size, mixed with the previous step
    (momentum), projected; then the loss there, and the best point and the latest
    misclassified point kept. best = (x_max, loss_max, grad_max, x_found, found)."""
    z = _project(x, x_adv + step * tf.sign(grad), eps)
    x_new = _project(x, x_adv + momentum * (z - x_adv) + (1.0 - momentum) * (x_adv - x_prev), eps)
    losses, grad_new, logits = loss_and_gradient(model, x_new, y, loss, eot_samples, target, single_draw)
    wrong = tf.not_equal(tf.argmax(logits, axis=1, output_type=tf.int32), y)
    x_max, loss_max, grad_max, x_found, found = best
    improved = losses > loss_max
    pick = lambda mask, a, b: tf.where(mask[:, None, None, None], a, b)  # noqa: E731
    best = (pick(improved, x_new, x_max), tf.maximum(losses, loss_max), pick(improved, grad_new, grad_max),
            pick(wrong, x_new, x_found), found | wrong)
    return x_new, grad_new, losses, best


class StepSchedule:
    """APGD's step size per image: 2 eps at the start, halved at a checkpoint where at
    most APGD_SUCCESS_RATE of the window's steps raised the loss, or where the step was
    not halved at the checkpoint before and the best loss has not risen since. Kept as
    Croce & Hein's code keeps it (autopgd_base.py), which differs from their paper's
    text at the first checkpoint only: there it counts the first step's loss against 0,
    not against the start's, and never halves for lack of progress."""

    def __init__(self, start_loss, eps, iterations):
        self.step = tf.fill([tf.shape(start_loss)[0], 1, 1, 1], 2.0 * eps)
        self.history = [tf.zeros_like(start_loss)]    # the loss before the first step, as their code reads it
        self.halved_before = tf.ones_like(start_loss, dtype=tf.bool)
        self.best_before = start_loss
        self.checkpoints = dict(apgd_checkpoints(iterations))

    def update(self, iteration, losses, best_loss):
        """After iteration `iteration` (from 0) with these losses and best losses so far:
        which images halve their step now (None between checkpoints)."""
        self.history.append(losses)
        window = self.checkpoints.get(iteration + 1)
        if window is None:
            return None
        history = self.history
        raised = tf.add_n([tf.cast(history[-j] > history[-j - 1], tf.float32) for j in range(1, window + 1)])
        halve = (raised <= APGD_SUCCESS_RATE * window) | (~self.halved_before & (self.best_before >= best_loss))
        self.halved_before, self.best_before = halve, best_loss
        self.step = tf.where(halve[:, None, None, None], self.step / 2.0, self.step)
        return halve


def _apgd_batch(model, x, y, target, eps, iterations, loss, seed, eot_samples, single_draw=False):
    """APGD on one batch (tensors); returns (x_adv, misclassified by the model)."""
    eps_t = tf.constant(eps, tf.float32)
    x_adv, losses, grad, wrong = _apgd_start(model, x, y, target, eps_t, seed, loss, eot_samples, single_draw)
    best = (x_adv, losses, grad, x_adv, wrong)
    x_prev = x_adv
    schedule = StepSchedule(losses, eps, iterations)
    for i in range(iterations):
        momentum = tf.constant(1.0 if i == 0 else APGD_MOMENTUM)
        x_new, grad, losses, best = _apgd_iteration(model, x, y, target, x_adv, x_prev, grad, schedule.step,
                                                    momentum, eps_t, best, loss, eot_samples, single_draw)
        x_prev, x_adv = x_adv, x_new
        halve = schedule.update(i, losses, best[1])
        if halve is not None:            # restart the halved images from the best point found
            mask = halve[:, None, None, None]
            x_adv = tf.where(mask, best[0], x_adv)
            grad = tf.where(mask, best[2], grad)
    _, _, _, x_found, found = best
    # an image never misclassified is handed on as it came, as the reference's perturb keeps it
    return tf.where(found[:, None, None, None], x_found, x).numpy(), found.numpy()


def apgd(model, x, y, *, eps, iterations=100, loss="ce", seed=0, eot_samples=1, single_draw=False,
         batch_size=500):
    """APGD (untargeted) with the cross-entropy ("ce") or DLR ("dlr") loss, one run
    from a random start. Returns, per image, the latest point the model misclassified,
    or the clean image where it never did (as Croce & Hein's perturb). Against a randomized model each
    gradient averages eot_samples draws; single_draw judges the loss and success on
    one draw, as AutoAttack's rand version does (otherwise on the mean logits)."""
    x, y = check_inputs(x, y, eps)
    out = x.copy()
    for batch, (lo, hi) in enumerate(batches(len(x), batch_size)):
        seed_pair = tf.constant([seed, batch], dtype=tf.int32)
        yb = tf.constant(y[lo:hi])
        out[lo:hi], _ = _apgd_batch(model, tf.constant(x[lo:hi]), yb, yb, eps, iterations, loss, seed_pair,
                                    int(eot_samples), bool(single_draw))
    return out


def target_start_seed(batch_seed, rank):
    """The random start's seed of APGD-T's run towards its rank-th target: a fresh start
    per target, as the reference draws one per target class."""
    return tf.random.experimental.stateless_fold_in(batch_seed, rank)


@tf.function(reduce_retracing=True)
def _mean_logits(model, x, eot_samples):
    x_rep = tf.concat([x] * eot_samples, axis=0) if eot_samples > 1 else x
    logits = model(x_rep, training=False)
    return tf.reduce_mean(tf.reshape(logits, [eot_samples, tf.shape(x)[0], -1]), axis=0)


def apgd_targeted(model, x, y, *, eps, target_classes=9, iterations=100, seed=0, eot_samples=1, batch_size=500):
    """APGD-T: APGD on the targeted DLR loss, once per target class, the clean image's
    2nd, 3rd, ... most likely classes in turn, each run from a fresh random start on the
    images that no earlier target broke. Returns each image's first misclassified point,
    else the clean image (as Croce & Hein's perturb)."""
    x, y = check_inputs(x, y, eps)
    out = x.copy()
    for batch, (lo, hi) in enumerate(batches(len(x), batch_size)):
        xb, yb = x[lo:hi], y[lo:hi]
        ranked = np.argsort(-_mean_logits(model, tf.constant(xb), int(eot_samples)).numpy(), axis=1)
        broken = np.zeros(len(yb), dtype=bool)
        batch_seed = tf.constant([seed, batch], dtype=tf.int32)
        for rank in range(1, min(target_classes, ranked.shape[1] - 1) + 1):
            todo = np.flatnonzero(~broken)
            if not len(todo):
                break
            x_adv, wrong = _apgd_batch(model, tf.constant(xb[todo]), tf.constant(yb[todo]),
                                       tf.constant(ranked[todo, rank].astype(np.int32)), eps, iterations,
                                       "dlr_targeted", target_start_seed(batch_seed, rank), int(eot_samples))
            out[lo:hi][todo] = x_adv
            broken[todo] = wrong
    return out


# ------------------------------------------------------------------------- FAB-T

FAB_ALPHA_MAX = 0.1    # largest weight of the step from the clean image (Croce & Hein's alpha_max)
FAB_ETA = 1.05         # overshoot past the linearised boundary
FAB_BETA = 0.9         # pull back towards the clean image after a success


def linf_step_to_hyperplane(points, w, b):
    """Per row, the smallest step d in L-inf norm with w . (points + d) = b that keeps
    points + d in [0, 1]; where the box cannot reach the hyperplane, the step to the
    box's corner nearest it. Rows are flattened images (N, D).

    Moving every coordinate by up to lam towards lowering |w . x - b| (as far as the box
    lets it) lowers it by g(lam) = sum_i |w_i| min(lam, room_i), a piecewise linear,
    non-decreasing function: lam is where it meets the gap, found on the sorted rooms."""
    gap = tf.reduce_sum(w * points, axis=1) - b
    w = w * tf.where(gap >= 0, 1.0, -1.0)[:, None]           # now lower w . x by |gap|
    gap = tf.abs(gap)
    direction = -tf.sign(w)
    room = tf.where(w > 0, points, tf.where(w < 0, 1.0 - points, 0.0))
    order = tf.argsort(room, axis=1)
    room_sorted = tf.gather(room, order, batch_dims=1)
    weight_sorted = tf.gather(tf.abs(w), order, batch_dims=1)
    moved_full = tf.cumsum(weight_sorted * room_sorted, axis=1)      # coordinates that hit their bound
    weight_left = tf.reduce_sum(weight_sorted, axis=1, keepdims=True) - tf.cumsum(weight_sorted, axis=1)
    reach = moved_full + room_sorted * weight_left                   # g at each sorted room
    enough = reach >= gap[:, None]
    reachable = tf.reduce_any(enough, axis=1)
    k = tf.argmax(tf.cast(enough, tf.int32), axis=1, output_type=tf.int32)   # first breakpoint past the gap
    # below breakpoint k the coordinates before it are at their bounds, the rest move lam
    before = tf.gather(tf.pad(moved_full, [[0, 0], [1, 0]]), k, batch_dims=1)
    total = tf.reduce_sum(weight_sorted, axis=1, keepdims=True)
    free = tf.gather(tf.concat([total, weight_left], axis=1), k, batch_dims=1)
    lam = tf.where(reachable, (gap - before) / tf.maximum(free, 1e-12), tf.float32.max)
    return direction * tf.minimum(lam[:, None], room)


def _flat(t):
    return tf.reshape(t, [tf.shape(t)[0], -1])


@tf.function(reduce_retracing=True)
def _fab_iteration(model, x0, x1, y, target, best, best_norm):
    """One FAB step: linearise logit(target) - logit(y) at x1, project x1 and the clean
    x0 on its zero set (L-inf, inside the box), move to a mix of the two projections
    (more of the clean one's the closer x0 is), overshoot by eta; where the result is
    misclassified, keep it if it is the closest yet and pull it back towards x0."""
    with tf.GradientTape() as tape:
        tape.watch(x1)
        logits = model(x1, training=False)
        diff = tf.gather(logits, target, axis=1, batch_dims=1) - tf.gather(logits, y, axis=1, batch_dims=1)
        total = tf.reduce_sum(diff)
    w = _flat(tape.gradient(total, x1, unconnected_gradients=tf.UnconnectedGradients.ZERO))
    b = tf.reduce_sum(w * _flat(x1), axis=1) - diff
    d1 = tf.reshape(linf_step_to_hyperplane(_flat(x1), w, b), tf.shape(x1))
    d0 = tf.reshape(linf_step_to_hyperplane(_flat(x0), w, b), tf.shape(x1))
    a1 = tf.maximum(tf.reduce_max(tf.abs(d1), axis=[1, 2, 3], keepdims=True), 1e-8)
    a0 = tf.maximum(tf.reduce_max(tf.abs(d0), axis=[1, 2, 3], keepdims=True), 1e-8)
    alpha = tf.clip_by_value(a1 / (a1 + a0), 0.0, FAB_ALPHA_MAX)
    x1 = tf.clip_by_value((x1 + FAB_ETA * d1) * (1.0 - alpha) + (x0 + FAB_ETA * d0) * alpha, 0.0, 1.0)
    wrong = tf.not_equal(tf.argmax(model(x1, training=False), axis=1, output_type=tf.int32), y)
    norm = tf.reduce_max(tf.abs(x1 - x0), axis=[1, 2, 3])
    closer = wrong & (norm < best_norm)
    best = tf.where(closer[:, None, None, None], x1, best)
    best_norm = tf.where(closer, norm, best_norm)
    x1 = tf.where(wrong[:, None, None, None], x0 + FAB_BETA * (x1 - x0), x1)
    return x1, best, best_norm


def fab_targeted(model, x, y, *, eps, target_classes=9, iterations=100, batch_size=500):
    """FAB-T, L-inf, one run per target from the clean image (the standard version's one
    restart has no random start): the clean image's 2nd, 3rd, ... most likely classes in
    turn, each run on the images still classified right that no earlier target broke
    within eps. Only images the model classifies right are attacked. Returns each
    image's closest misclassified point where its L-inf distance is <= eps, else the
    clean image. Deterministic (no randomness at all)."""
    x, y = check_inputs(x, y, eps)
    out = x.copy()
    for lo, hi in batches(len(x), batch_size):
        xb, yb = x[lo:hi], y[lo:hi]
        logits = model(tf.constant(xb), training=False).numpy()
        ranked = np.argsort(-logits, axis=1)
        standing = ranked[:, 0] == yb
        for rank in range(1, min(target_classes, ranked.shape[1] - 1) + 1):
            todo = np.flatnonzero(standing)
            if not len(todo):
                break
            x0, y0 = tf.constant(xb[todo]), tf.constant(yb[todo])
            target = tf.constant(ranked[todo, rank].astype(np.int32))
            x1, best, best_norm = x0, x0, tf.fill([len(todo)], np.float32(1e10))
            for _ in range(iterations):
                x1, best, best_norm = _fab_iteration(model, x0, x1, y0, target, best, best_norm)
            broken = best_norm.numpy() <= eps
            out[lo:hi][todo[broken]] = best.numpy()[broken]
            standing[todo[broken]] = False
    return out


# ------------------------------------------------------------------------ Square

SQUARE_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)   # iterations after which p halves


def square_fraction(iteration, p_init):
    """Share of the image's pixels the Square attack changes at an iteration (counted
    from 0): p_init, halved after each of SQUARE_HALVINGS, on the raw iteration count
    (AutoAttack's standard version builds Square with resc_schedule=False, so a
    5,000-query run ends at p_init / 128)."""
    return p_init / 2 ** sum(iteration > limit for limit in SQUARE_HALVINGS)


@tf.function(reduce_retracing=True)
def _margins(model, x, y):
    """True logit minus the best other one: negative once the image is misclassified."""
    return -per_example_loss(model(x, training=False), y, "margin")


@tf.function(reduce_retracing=True)
def _square_step(model, x, x_best, margin, y, row, col, size, signs, eps):
    """Set one square (the same for every image of the batch, as AutoAttack draws it) to
    x +- eps, clipped to [0, 1]; keep the result where the margin fell."""
    height, width = tf.shape(x)[1], tf.shape(x)[2]
    r = tf.range(height)[None, :, None, None]
    c = tf.range(width)[None, None, :, None]
    inside = (r >= row) & (r < row + size) & (c >= col) & (c < col + size)
    new = tf.where(inside, tf.clip_by_value(x + eps * signs, 0.0, 1.0), x_best)
    new_margin = _margins(model, new, y)
    better = new_margin < margin
    return tf.where(better[:, None, None, None], new, x_best), tf.minimum(new_margin, margin)


def square(model, x, y, *, eps, queries=5000, p_init=0.8, seed=0, batch_size=500):
    """The Square attack (L-inf) as AutoAttack runs it: a random search that only
    queries the model's outputs, so gradient masking does not stop it. Starts from
    vertical stripes of +-eps, then for `queries` iterations sets one random square (one
    position and one sign per channel for the whole batch) to x +- eps, kept per image
    where the margin loss falls; an image stops once misclassified."""
    x, y = check_inputs(x, y, eps)
    out = x.copy()
    _, height, width, channels = x.shape
    eps_t = tf.constant(eps, tf.float32)
    for batch, (lo, hi) in enumerate(batches(len(x), batch_size)):
        rng = np.random.default_rng([seed, batch])
        xb, yb = x[lo:hi], y[lo:hi]
        stripes = rng.choice([-1.0, 1.0], size=(len(yb), 1, width, channels)).astype(np.float32)
        x_best = np.clip(xb + eps * stripes, 0.0, 1.0)
        margin = _margins(model, tf.constant(x_best), tf.constant(yb)).numpy()
        for iteration in range(queries):
            active = np.flatnonzero(margin > 0)
            if not len(active):
                break
            p = square_fraction(iteration, p_init)
            size = max(int(round(math.sqrt(p * height * width))), 1)
            row, col = (int(v) for v in rng.integers(0, [height - size, width - size]))
            signs = rng.choice([-1.0, 1.0], size=(1, 1, 1, channels)).astype(np.float32)
            new_best, new_margin = _square_step(model, tf.constant(xb[active]), tf.constant(x_best[active]),
                                                tf.constant(margin[active]), tf.constant(yb[active]),
                                                tf.constant(row), tf.constant(col), tf.constant(size),
                                                tf.constant(signs), eps_t)
            x_best[active], margin[active] = new_best.numpy(), new_margin.numpy()
        out[lo:hi] = x_best
    return out
