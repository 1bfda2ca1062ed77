"""Every attack of the repository: FGSM, PGD (L-inf and L2, random start, restarts,
EOT) and the study's iterative FGSM-k. Each is `attack(model, x, y, *, eps, ...) ->
x_adv`: batched, compiled with tf.function, deterministic under a seed, clipped to
[0, 1], and never changes the model.

Run it to measure the undefended base model under each attack and budget:

    python attacks.py [--protocol standard|paper] [--quick]
"""
import dataclasses
import time

import numpy as np

from cli import common_parser, parse_args, positive_float, positive_int, run_main
from data import attack_subset, load_data
from model import get_base_model, predict_labels, tf
from reporting import accuracy_ci, error_bars, format_acc, pyplot, save_figure, write_table

STUDY_EPS = 20 / 255     # the study's FGSM-k budget (20 of 255 grey levels)
STUDY_STEP = 8 / 255     # its step
STUDY_MAX_STEPS = 100
STUDY_CONFIDENCE = 0.8   # it stops once misclassified with at least this confidence
HEADLINE_EPS = 0.1       # the L-inf budget of every headline robust accuracy


KERAS_EPSILON = 1e-7     # Keras clips probabilities to [eps, 1 - eps] in its cross-entropy
LOSSES = {"ce": "cross-entropy on logits",
          "study": "the study's: cross-entropy on softmax probabilities clipped to [1e-7, 1 - 1e-7]",
          "margin": "margin (best wrong logit - true logit)"}


def per_example_loss(logits, y, loss="ce"):
    """Loss the attacker maximises: cross-entropy on the logits; "study", the study's
    loss (Keras' cross-entropy on the softmax output, whose clipping gives an image the
    model is nearly certain of a zero gradient); the margin (best wrong logit minus
    true logit, Carlini-Wagner) which does not saturate; or "kl": the KL divergence
    from reference probabilities passed as y (TRADES' inner maximisation)."""
    if loss == "kl":
        return tf.reduce_sum(y * (tf.math.log(y + 1e-12) - tf.nn.log_softmax(logits)), axis=1)
    y = tf.cast(y, tf.int32)
    if loss == "ce":
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
    if loss == "study":
        probs = tf.clip_by_value(tf.nn.softmax(logits), KERAS_EPSILON, 1.0 - KERAS_EPSILON)
        return -tf.math.log(tf.gather(probs, y, axis=1, batch_dims=1))
    if loss == "margin":
        true = tf.one_hot(y, tf.shape(logits)[1], dtype=logits.dtype)
        true_logit = tf.reduce_sum(logits * true, axis=1)
        best_other = tf.reduce_max(logits - 1e9 * true, axis=1)
        return best_other - true_logit
    raise ValueError(f"unknown loss {loss!r}: use one of {', '.join(LOSSES)}")


def _input_gradient(model, x, y, loss, eot_samples):
    """Gradient of the summed loss with respect to the input; with eot_samples > 1 the
    batch is repeated so that a randomized model draws its randomness per copy, and
    the copies' gradients are averaged (expectation over transformation)."""
    x_rep = tf.concat([x] * eot_samples, axis=0) if eot_samples > 1 else x
    y_rep = tf.concat([y] * eot_samples, axis=0) if eot_samples > 1 else y
    with tf.GradientTape() as tape:
        tape.watch(x_rep)
        total = tf.reduce_sum(per_example_loss(model(x_rep, training=False), y_rep, loss))
    # a model with no gradient path to its input (gradient masking) gets a zero
    # gradient, not an error: the attack then fails visibly and the sanity checks say so
    grad = tape.gradient(total, x_rep, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    if eot_samples > 1:
        grad = tf.reduce_mean(tf.reshape(grad, tf.concat([[eot_samples], tf.shape(x)], 0)), axis=0)
    return grad


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


def _batches(n, batch_size):
    for start in range(0, n, batch_size):
        yield start, min(start + batch_size, n)


def _check(x, y, eps):
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
    x, y = _check(x, y, eps)
    step_size = 2.5 * eps / steps if step_size is None else step_size
    best = x.copy()
    for restart in range(restarts):
        for batch, (lo, hi) in enumerate(_batches(len(x), batch_size)):
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


def pgd_name(steps, restarts=1):
    """'PGD-100x2': the name of PGD with that many steps and restarts."""
    return f"PGD-{steps}" + (f"x{restarts}" if restarts > 1 else "")


def fgsm(model, x, y, *, eps, loss="ce", batch_size=500, seed=0):
    """Fast gradient sign method (Goodfellow et al. 2015): one step of size eps."""
    return pgd(model, x, y, eps=eps, norm="linf", steps=1, step_size=eps, random_start=False,
               loss=loss, batch_size=batch_size, seed=seed)


@tf.function(reduce_retracing=True)
def _fgsm_k_step(model, x, x_adv, y, eps, step_size, confidence, loss, first):
    """One step of the study's FGSM-k. Like the study, it always takes the first step
    and then stops an image once the step before left it misclassified with enough
    confidence. Returns the new images and that 'done' mask."""
    with tf.GradientTape() as tape:
        tape.watch(x_adv)
        logits = model(x_adv, training=False)
        total = tf.reduce_sum(per_example_loss(logits, y, loss))
    wrong = tf.not_equal(tf.argmax(logits, axis=1, output_type=tf.int32), y)
    done = wrong & (tf.reduce_max(tf.nn.softmax(logits), axis=1) >= confidence) & tf.logical_not(first)
    stepped = x_adv + step_size * tf.sign(tape.gradient(total, x_adv,
                                                        unconnected_gradients=tf.UnconnectedGradients.ZERO))
    stepped = tf.clip_by_value(tf.clip_by_value(stepped, x - eps, x + eps), 0.0, 1.0)
    stepped = tf.round(stepped * 255.0) / 255.0
    return tf.where(done[:, None, None, None], x_adv, stepped), done


def fgsm_k(model, x, y, *, eps=STUDY_EPS, step_size=STUDY_STEP, max_steps=STUDY_MAX_STEPS,
           confidence=STUDY_CONFIDENCE, loss="ce", batch_size=500, seed=0):
    """The study's iterative FGSM in [0, 1] units: steps of 8/255 within 20/255, pixels
    rounded to the 1/255 grid (the study cast to integers), each image stopping once it
    is misclassified with softmax confidence >= 0.8. loss="study" is the study's own
    gradient (see per_example_loss); "ce" the stronger logit loss. Deterministic (seed
    unused)."""
    x, y = _check(x, y, eps)
    out = np.empty_like(x)
    eps_t, step_t = tf.constant(eps, tf.float32), tf.constant(step_size, tf.float32)
    confidence_t = tf.constant(confidence, tf.float32)
    for lo, hi in _batches(len(x), batch_size):
        xb, yb = tf.constant(x[lo:hi]), tf.constant(y[lo:hi])
        x_adv = xb
        for step in range(max_steps):
            x_adv, done = _fgsm_k_step(model, xb, x_adv, yb, eps_t, step_t, confidence_t, loss,
                                       tf.constant(step == 0))
            if bool(tf.reduce_all(done)):
                break
        out[lo:hi] = x_adv.numpy()
    return out


ATTACKS = {"fgsm": fgsm, "pgd": pgd, "fgsm_k": fgsm_k}


# ------------------------------------------------------------ the worst case

@dataclasses.dataclass(frozen=True)
class Target:
    """A defense as the attacker and the judge see it. judge(x, y) says which images
    the defense classifies right; views are what an adaptive attacker differentiates,
    as (label, model, EOT draws). Each defense builds its own (filters.target,
    certified_robustness.smoothed_target); a plain model is plain_target."""
    judge: object
    views: tuple

    def worst_case(self, make_adversarial, y):
        """Correct only where make_adversarial(view, eot) -> x_adv failed through every
        view: an image counts as robust only if every view's attack missed it."""
        correct = np.ones(len(y), dtype=bool)
        for _, view, eot in self.views:
            correct &= self.judge(make_adversarial(view, eot), y)
        return correct

    def describe(self):
        return " + ".join(label + (f", EOT-{eot}" if eot > 1 else "") for label, _, eot in self.views)


def plain_target(model):
    """A deterministic model with a useful gradient: judged and attacked as it is."""
    return Target(lambda x, y: predict_labels(model, x) == y, (("autodiff", model, 1),))


# ------------------------------------------------------------------- experiment

DEFAULT_EPS = {"standard": (0.02, 0.05, 0.1, 0.15, 0.2, 0.3), "paper": (0.05, 0.1, 0.2)}
QUICK_EPS = (0.05, 0.1, 0.2)


def attack_grid(protocol, quick, eps_values=None):
    """(label, attack, eps, keyword arguments) rows of the base-model experiment: the
    study's FGSM-k (with the protocol's loss), FGSM and PGD-20 at each eps, stronger PGD
    (more steps, restarts) at the headline eps 0.1, a margin loss, an unbounded sanity
    attack and L2 PGD."""
    eps_values = eps_values or (QUICK_EPS if quick else DEFAULT_EPS[protocol.name])
    long_steps = 40 if quick else 100
    grid = [("FGSM-k (study)", fgsm_k, STUDY_EPS, dict(loss=protocol.fgsm_k_loss))]
    for eps in eps_values:
        grid += [("FGSM", fgsm, eps, {}),
                 ("PGD-20", pgd, eps, dict(steps=20, step_size=eps / 10))]
    restarts = (2,) if quick or protocol.name == "paper" else (2, 5)
    grid += [(f"PGD-{long_steps}x{r}", pgd, 0.1, dict(steps=long_steps, restarts=r, step_size=0.01))
             for r in restarts]
    grid += [("PGD-20 (margin loss)", pgd, 0.1, dict(steps=20, step_size=0.01, loss="margin")),
             ("unbounded PGD-20 (sanity: ~0%)", pgd, 1.0, dict(steps=20, step_size=0.1))]
    grid += [("L2 PGD-20", pgd, eps, dict(norm="l2", steps=20, step_size=eps / 8))
             for eps in ([0.5, 1.0] if quick else [0.5, 1.0, 1.5, 2.0])]
    return grid


def run_attacks(ctx, n=None, eps_values=None):
    """The undefended base CNN under every attack of attack_grid, on n fixed test images."""
    protocol = ctx.protocol
    data = load_data(protocol, ctx.data_dir, ctx.quick)
    model, _ = get_base_model(ctx, data)
    n = n or (200 if ctx.quick else protocol.n_attack)
    idx = attack_subset(len(data.y_test), n)
    x, y = data.x_test[idx], data.y_test[idx]
    rows = [{"protocol": protocol.name, "attack": "none (clean)", "norm": "-", "eps": 0.0, "loss": "-",
             **accuracy_ci(predict_labels(model, x) == y), "seconds": 0.0}]
    print(f"clean: {format_acc(rows[0])}")
    for label, attack, eps, kwargs in attack_grid(protocol, ctx.quick, eps_values):
        start = time.time()
        x_adv = attack(model, x, y, eps=eps, seed=ctx.seed, **kwargs)
        seconds = time.time() - start
        stats = accuracy_ci(predict_labels(model, x_adv) == y)
        norm = kwargs.get("norm", "linf")
        rows.append({"protocol": protocol.name, "attack": label, "norm": norm, "eps": round(eps, 4),
                     "loss": kwargs.get("loss", "ce"), **stats, "seconds": round(seconds, 2)})
        print(f"{label:>32} {norm:>4} eps={eps:.4f}: {format_acc(stats)} ({seconds:.1f} s)")
    stem = ctx.results_dir / f"attacks_{protocol.name}"
    write_table(rows, stem, title=f"Undefended {protocol.architecture} under each attack, "
                f"{protocol.name} protocol, seed {ctx.seed} (exact 95% intervals; loss: "
                f"{'; '.join(f'{k} = {v}' for k, v in LOSSES.items())})")
    plot_accuracy_vs_eps(rows, f"Undefended {protocol.architecture} ({protocol.name} protocol, n={n})",
                         ctx.results_dir / f"attacks_{protocol.name}.png")
    print(f"wrote {stem}.csv, {stem}.md, {stem}.png")


def plot_accuracy_vs_eps(rows, title, path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    clean, singles = rows[0], 0
    for label in dict.fromkeys(r["attack"] for r in rows[1:]):
        sel = [r for r in rows if r["attack"] == label and r["norm"] == "linf"]
        if len(sel) == 1 and sel[0]["eps"] < 1:  # one budget only: a point with its interval, set apart
            r, singles = sel[0], singles + 1  # from the others at that budget so that none hides another
            ax.errorbar([r["eps"] + 0.004 * singles], [100 * r["acc"]], fmt="s", capsize=3,
                        label=f"{label} (at {r['eps']:g})", yerr=error_bars([r]))
        if len(sel) < 2:
            continue
        eps = [0.0] + [r["eps"] for r in sel]
        acc = np.array([clean["acc"]] + [r["acc"] for r in sel]) * 100
        low = np.array([clean["ci_low"]] + [r["ci_low"] for r in sel]) * 100
        high = np.array([clean["ci_high"]] + [r["ci_high"] for r in sel]) * 100
        ax.plot(eps, acc, "o-", label=label)
        ax.fill_between(eps, low, high, alpha=0.2)
    ax.set(xlabel="L-inf eps (pixels in [0, 1])", ylabel="accuracy (%), 95% interval shaded",
           title=title, ylim=(0, 100))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    save_figure(fig, path)


def main():
    parser = common_parser("Robust accuracy of the undefended base CNN under every attack "
                           "(the sanity baseline of attacks.py).")
    parser.add_argument("--images", type=positive_int, default=None,
                        help="test images attacked (default: the protocol's 1,000; 200 with --quick)")
    parser.add_argument("--eps", type=positive_float, nargs="+", default=None,
                        help="L-inf budgets to sweep (default: "
                             f"{' '.join(map(str, DEFAULT_EPS['standard']))}; paper protocol "
                             f"{' '.join(map(str, DEFAULT_EPS['paper']))})")
    args, ctx = parse_args(parser)
    run_attacks(ctx, args.images, args.eps)


if __name__ == "__main__":
    run_main(main)
