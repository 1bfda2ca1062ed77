"""Randomized smoothing (Cohen, Rosenfeld & Kolter 2019) in the standard protocol:
noise-trained CNNs, a certified L2 radius per image, the empirical L2 attack beside
the certificate, and the PREDICT-n table (fashion_defenses.experiments.certified_robustness).

    python certified_robustness.py [--sigmas 0.12 0.25 0.5] [--quick]          # standard protocol only
    python certified_robustness.py --merge       # the tables from certify.py's files (shards joined)
"""
from fashion_defenses.cli import common_parser, parse_args, positive_float, positive_int, run_main
from fashion_defenses.defenses.certificates import CERTIFY_ALPHA, SIGMAS


def build_parser():
    parser = common_parser("Randomized smoothing with certified L2 radii (Cohen et al. 2019).")
    parser.add_argument("--sigmas", type=positive_float, nargs="+", default=None,
                        help=f"noise levels (default {' '.join(map(str, SIGMAS))})")
    parser.add_argument("--samples", type=positive_int, default=None,
                        help="CERTIFY samples (default: 100,000 for sigma 0.25, 10,000 for the others; "
                             "1,000 with --quick)")
    parser.add_argument("--n0", type=positive_int, default=100, help="CERTIFY samples that pick the class")
    parser.add_argument("--alpha", type=float, default=CERTIFY_ALPHA, help="failure probability of each certificate")
    parser.add_argument("--images", type=positive_int, default=None,
                        help="test images to certify (default 500; 20 with --quick)")
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
    if ctx.protocol.name != "standard":
        parser.error("certification runs in the standard protocol only (the study's CNN would need about a "
                     "minute per image at n = 100,000, and the study did not certify)")
    if args.samples is not None and args.n0 > args.samples:
        parser.error(f"--n0 ({args.n0}) must not exceed --samples ({args.samples})")
    if not 0 < args.alpha < 1:
        parser.error(f"--alpha must lie in (0, 1), got {args.alpha}")
    n_images, sigmas = args.images or (20 if ctx.quick else 500), args.sigmas or SIGMAS
    if args.retrain and args.merge:
        parser.error("--retrain cannot go with --merge: the logs certified the models as they were")
    stage.run_certification(ctx, sigmas, n_images, args.n0, args.samples, args.alpha, args.merge, args.retrain)


if __name__ == "__main__":
    run_main(main)
