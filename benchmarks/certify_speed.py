"""CERTIFY throughput: our compiled noise sampling and counting against plain batched
inference of the same base model (the limit) and against IBM ART's
TensorFlowV2RandomizedSmoothing.certify, on the same images, n and batch size.

    python benchmarks/certify_speed.py [--images 5] [--samples 10000] [--batch-size 1000]
"""
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fashion_defenses.cli import check_flags_early, common_parser, parse_args, positive_int, run_main


def build_parser():
    parser = common_parser(__doc__.splitlines()[0], results="benchmarks/results")
    parser.add_argument("--images", type=positive_int, default=5, help="test images certified")
    parser.add_argument("--samples", type=positive_int, default=10_000, help="CERTIFY samples per image")
    parser.add_argument("--batch-size", type=positive_int, default=1000, help="noisy samples per batch")
    parser.add_argument("--repeats", type=positive_int, default=2, help="timed runs; the fastest counts")
    return parser


check_flags_early(__name__, build_parser)

import numpy as np  # noqa: E402
from timing import best_time  # noqa: E402

from fashion_defenses.data import attack_subset, load_data  # noqa: E402
from fashion_defenses.defenses import smoothing  # noqa: E402
from fashion_defenses.framework import keras, tf  # noqa: E402
from fashion_defenses.models import get_base_model  # noqa: E402
from fashion_defenses.reporting import write_table  # noqa: E402

SIGMA, N0, ALPHA = 0.25, 100, 0.001


def plain_inference(base, image, samples, batch_size):
    """The limit: the same number of noisy samples through the model, batched, no counting."""
    @tf.function(reduce_retracing=True)
    def infer(batch):
        return tf.argmax(base(batch, training=False), axis=1)
    noisy = tf.constant(np.clip(image + SIGMA * np.random.default_rng(0).standard_normal(
        (batch_size,) + image.shape), 0, 1).astype(np.float32))

    def run():
        for _ in range(-(-samples // batch_size)):
            out = infer(noisy)
        return out.numpy()
    return run


def main():
    parser = build_parser()
    args, ctx = parse_args(parser)
    from art.estimators.certification.randomized_smoothing import TensorFlowV2RandomizedSmoothing

    data = load_data(ctx.protocol, ctx.data_dir)
    base, _ = get_base_model(ctx, data)   # speed does not depend on how it was trained
    x = data.x_test[attack_subset(len(data.y_test), args.images)]
    samples = args.images * (N0 + args.samples)

    smooth = smoothing.Smooth(base, SIGMA, batch_size=args.batch_size)
    ours_s, ours = best_time(lambda: [smooth.certify(img, N0, args.samples, ALPHA, seed=i) for i, img in enumerate(x)],
                             args.repeats)

    limit_s, _ = best_time(plain_inference(base, x[0], samples, args.batch_size), args.repeats)

    art = TensorFlowV2RandomizedSmoothing(base, nb_classes=10, input_shape=(28, 28, 1), sample_size=N0,
                                          scale=SIGMA, alpha=ALPHA, clip_values=(0.0, 1.0),
                                          loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    start = time.perf_counter()
    art_pred, art_radius = art.certify(x, n=args.samples, batch_size=args.batch_size)
    art_s = time.perf_counter() - start

    rows = [{"implementation": "ours (Smooth.certify)", "seconds": round(ours_s, 3),
             "samples_per_s": round(samples / ours_s)},
            {"implementation": "limit: plain batched inference", "seconds": round(limit_s, 3),
             "samples_per_s": round(samples / limit_s)},
            {"implementation": "IBM ART TensorFlowV2RandomizedSmoothing.certify", "seconds": round(art_s, 3),
             "samples_per_s": round(samples / art_s)}]
    for r in rows:
        r["vs_ours"] = round(r["seconds"] / ours_s, 2)
        print(f"  {r['implementation']:>50}: {r['seconds']:8.3f} s  {r['samples_per_s']:>9,} samples/s")
    print(f"ours / limit throughput = {limit_s / ours_s:.2f}x; ART / ours time = {art_s / ours_s:.2f}x")
    print(f"same decisions: ours {[p for p, _, _ in ours]}, ART {art_pred.tolist()}")
    stem = ctx.results_dir / "benchmark_certify"
    write_table(rows, stem, title=f"CERTIFY on {args.images} images, n0 {N0}, n {args.samples:,}, sigma {SIGMA}, "
                     f"batch {args.batch_size} ({samples:,} noisy samples); ours and the limit best of "
                     f"{args.repeats}, ART once; {os.cpu_count()} CPU cores, TF {tf.__version__}")
    print(f"wrote {stem}.csv, {stem}.md")


if __name__ == "__main__":
    run_main(main)
