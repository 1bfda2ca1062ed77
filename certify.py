"""One piece of the certification's compute (standard protocol only), written to its
own file in results/certify/: one sigma's certificates on a shard of the 500 images,
PREDICT at each n on them, or the empirical L2 attack beside the certificate. The
pipeline's certification jobs (dvc.yaml); `certified_robustness.py --merge` joins the
shards and makes the tables (fashion_defenses.experiments.certify).

    python certify.py --sigma 0.25 --shard 1/2 --models-dir zoo/standard   # one machine of two
    python certify.py --sigma 0.25 --predict-n --models-dir zoo/standard
    python certify.py --sigma 0.25 --empirical --models-dir zoo/standard
"""
import argparse

from fashion_defenses.certify_flags import add_certify_flags, checked_images
from fashion_defenses.cli import check_flags_early, common_parser, parse_args, positive_float, run_main


def shard_argument(text):
    try:
        i, k = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"use i/k, e.g. 2/4, got {text!r}") from None
    if not 1 <= i <= k:
        raise argparse.ArgumentTypeError(f"need 1 <= i <= k, got {text}")
    return i, k


def build_parser():
    parser = common_parser("Certify one sigma's noise-trained CNN on a shard of the images (Cohen et al.'s "
                           "CERTIFY), or measure PREDICT at each n, or the empirical L2 attack, on them.")
    parser.add_argument("--sigma", type=positive_float, required=True, help="the noise level")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--shard", type=shard_argument, default=(1, 1),
                      help="certify block i of k of the images (i/k; default 1/1, all of them)")
    what.add_argument("--predict-n", action="store_true", help="PREDICT at each n, clean and under PGD-20")
    what.add_argument("--empirical", action="store_true",
                      help="L2 PGD-20 at each radius on the undefended, noise-trained and smoothed classifiers")
    add_certify_flags(parser)
    return parser


check_flags_early(__name__, build_parser)


def main():
    parser = build_parser()
    args, ctx = parse_args(parser)
    n_images = checked_images(parser, args, ctx)
    from fashion_defenses.attacks import suite
    from fashion_defenses.experiments import certify as stage
    suite.remember_outcomes(ctx.results_dir / ".outcomes")
    if args.predict_n:
        stage.predict_n_sigma(ctx, args.sigma, n_images)
    elif args.empirical:
        stage.empirical_sigma(ctx, args.sigma, n_images)
    else:
        stage.certify_sigma(ctx, args.sigma, n_images, args.n0, args.samples, args.alpha, shard=args.shard)


if __name__ == "__main__":
    run_main(main)
