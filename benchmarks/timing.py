"""Timing helper shared by the benchmarks."""
import time


def best_time(fn, repeats, warmup=None):
    """Fastest of `repeats` timed calls after one untimed warm-up call (which pays
    for tf.function tracing; `warmup` replaces it where the full call is long or has
    nothing to trace); returns (seconds, the last call's result)."""
    result = (warmup or fn)()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def bare_gradients(model, x, y, batch_size, passes, forwards=0):
    """A function running `passes` bare input-gradient computations (forward and
    backward, compiled) per batch, each followed by `forwards` bare forward passes: the
    least any gradient attack must do (FAB checks every step with one more forward)."""
    from fashion_defenses.attacks import gradient as attacks
    from fashion_defenses.framework import tf

    @tf.function(reduce_retracing=True)
    def grad(xb, yb):
        with tf.GradientTape() as tape:
            tape.watch(xb)
            loss = tf.reduce_sum(attacks.per_example_loss(model(xb, training=False), yb))
        return tape.gradient(loss, xb)

    @tf.function(reduce_retracing=True)
    def forward(xb):
        return model(xb, training=False)

    def run():
        for lo in range(0, len(x), batch_size):
            xb, yb = tf.constant(x[lo:lo + batch_size]), tf.constant(y[lo:lo + batch_size])
            for _ in range(passes):
                g = grad(xb, yb)
                for _ in range(forwards):
                    g = forward(xb)
        return g.numpy()
    return run


def bare_training_steps(model, x, y, batch_size):
    """A function running one epoch of bare training steps (forward, backward and the
    optimizer's update, compiled) over the batches of x, without Keras' fit loop: the
    least plain training can cost, to which fit's overhead is compared."""
    from fashion_defenses.framework import tf

    @tf.function(reduce_retracing=True)
    def step(xb, yb):
        with tf.GradientTape() as tape:   # the loss the model was compiled with, as fit computes it
            loss = model.compute_loss(xb, yb, model(xb, training=True))
        gradients = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    def run():
        for lo in range(0, len(x), batch_size):
            loss = step(tf.constant(x[lo:lo + batch_size]), tf.constant(y[lo:lo + batch_size]))
        return loss.numpy()
    return run
