"""The flags of Cohen et al.'s CERTIFY and their checks, shared by certified_robustness.py
and certify.py; free of TensorFlow so that --help answers at once."""
from fashion_defenses.cli import positive_int
from fashion_defenses.defenses.certificates import CERTIFY_ALPHA


def add_certify_flags(parser):
    parser.add_argument("--samples", type=positive_int, default=None,
                        help="CERTIFY samples (default: 100,000 for sigma 0.25, 10,000 for the others; "
                             "1,000 with --quick)")
    parser.add_argument("--n0", type=positive_int, default=100, help="CERTIFY samples that pick the class")
    parser.add_argument("--alpha", type=float, default=CERTIFY_ALPHA, help="failure probability of each certificate")
    parser.add_argument("--images", type=positive_int, default=None,
                        help="test images to certify (default 500; 20 with --quick)")


def checked_images(parser, args, ctx):
    """The number of test images to certify, once the flags are known to fit together
    (parser.error, one line, where they do not)."""
    if ctx.protocol.name != "standard":
        parser.error("certification runs in the standard protocol only (the study's CNN would need about a "
                     "minute per image at n = 100,000, and the study did not certify)")
    if args.samples is not None and args.n0 > args.samples:
        parser.error(f"--n0 ({args.n0}) must not exceed --samples ({args.samples})")
    if not 0 < args.alpha < 1:
        parser.error(f"--alpha must lie in (0, 1), got {args.alpha}")
    return args.images or (20 if ctx.quick else 500)
