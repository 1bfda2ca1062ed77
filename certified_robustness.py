"""Randomized smoothing (Cohen, Rosenfeld & Kolter 2019) in the standard protocol:
noise-trained CNNs, a certified L2 radius per image, the empirical L2 attack beside
the certificate, and the PREDICT-n table (fashion_defenses.experiments.certified_robustness).

    python certified_robustness.py [--sigmas 0.12 0.25 0.5] [--quick]          # standard protocol only
    python certified_robustness.py --merge       # the tables from certify.py's files (shards joined)
"""
from fashion_defenses.certify_flags import add_certify_flags, checked_images
from fashion_defenses.cli import common_parser, parse_args, positive_float, run_main
from fashion_defenses.defenses.certificates import SIGMAS


def build_parser():
    parser = common_parser("Randomized smoothing with certified L2 radii (Cohen et al. 2019).")
    parser.add_argument("--sigmas", type=positive_float, nargs="+", default=None,
                        help=f"noise levels (default {' '.join(map(str, SIGMAS))})")
    add_certify_flags(parser)
    parser.add_argument("--merge", action="store_true",
                        help="compute nothing: join the shard logs of certify.py and make the tables from its files "
                             "(the pipeline's report)")
    parser.add_argument("--retrain", action="store_true",
                        help="train the noise CNNs again even if cached, and certify them afresh")
    return parser


def main():
    parser = build_parser()
    args, ctx = parse_args(parser)
    # the package's stages load TensorFlow (5-7 s): only once the flags are known to be good
    from fashion_defenses.attacks import suite
    from fashion_defenses.experiments import certified_robustness as stage
    suite.remember_outcomes(ctx.results_dir / ".outcomes")
    n_images, sigmas = checked_images(parser, args, ctx), args.sigmas or SIGMAS
    if args.retrain and args.merge:
        parser.error("--retrain cannot go with --merge: the logs certified the models as they were")
    stage.run_certification(ctx, sigmas, n_images, args.n0, args.samples, args.alpha, args.merge, args.retrain)


if __name__ == "__main__":
    run_main(main)
