"""The batched TensorFlow dual filter (2x2 median twice) against the study's way,
scipy.ndimage.median_filter applied twice one image at a time, on the 10,000
Fashion-MNIST test images; checks that both give identical images.

    python benchmarks/median_filter.py [--images 10000] [--batch-size 1000] [--repeats 3]
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fashion_defenses.cli import check_flags_early, common_parser, parse_args, positive_int, run_main


def build_parser():
    parser = common_parser(__doc__.splitlines()[0], results="benchmarks/results")
    parser.add_argument("--images", type=positive_int, default=10000, help="test images filtered")
    parser.add_argument("--batch-size", type=positive_int, default=1000, help="images per TensorFlow batch")
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed runs; the fastest counts")
    return parser


check_flags_early(__name__, build_parser)

import numpy as np  # noqa: E402
from scipy.ndimage import median_filter  # noqa: E402
from timing import best_time  # noqa: E402

from fashion_defenses.data import load_fashion_mnist, to_unit_float  # noqa: E402
from fashion_defenses.defenses.filters import make_filter  # noqa: E402
from fashion_defenses.framework import tf  # noqa: E402
from fashion_defenses.reporting import write_table  # noqa: E402


def main():
    parser = build_parser()
    args, ctx = parse_args(parser)
    x = to_unit_float(load_fashion_mnist(ctx.data_dir)[2][:args.images])
    layer = make_filter("dual")
    filter_batch = tf.function(layer.call, reduce_retracing=True)

    def ours():
        return np.concatenate([filter_batch(tf.constant(x[lo:lo + args.batch_size])).numpy()
                               for lo in range(0, len(x), args.batch_size)])

    def scipy_loop():
        return np.stack([median_filter(median_filter(img, size=2), size=2) for img in x[..., 0]])[..., None]

    ours_s, out_ours = best_time(ours, args.repeats)
    scipy_s, out_scipy = best_time(scipy_loop, args.repeats)
    identical = np.array_equal(out_ours, out_scipy)
    print(f"dual 2x2 median on {len(x):,} images, best of {args.repeats}")
    print(f"  TensorFlow, batched ({args.batch_size}): {ours_s:.3f} s  ({len(x) / ours_s:,.0f} images/s)")
    print(f"  scipy, one image at a time:  {scipy_s:.3f} s  ({len(x) / scipy_s:,.0f} images/s)")
    print(f"  scipy / TensorFlow = {scipy_s / ours_s:.1f}x; outputs identical: {identical}")
    stem = ctx.results_dir / "benchmark_median_filter"
    write_table([{"implementation": "TensorFlow layer, batched", "seconds": round(ours_s, 3),
                       "images_per_s": round(len(x) / ours_s), "identical_to_scipy": identical},
                      {"implementation": "scipy.ndimage.median_filter per image (the study's way)",
                       "seconds": round(scipy_s, 3), "images_per_s": round(len(x) / scipy_s),
                       "identical_to_scipy": True}],
                     stem, title=f"Dual 2x2 median on {len(x):,} test images, best of {args.repeats}, "
                                 f"batch {args.batch_size}, {os.cpu_count()} CPU cores, TF {tf.__version__}")
    print(f"wrote {stem}.csv, {stem}.md")


if __name__ == "__main__":
    run_main(main)
