"""Timing helper shared by the benchmarks."""
import time


def best_time(fn, repeats):
    """Fastest of `repeats` timed calls after one untimed warm-up call (which pays
    for tf.function tracing); returns (seconds, the last call's result)."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result
