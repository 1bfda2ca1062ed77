"""The undefended base CNN under the whole attack suite, the sanity baseline every
defense is set against (fashion_defenses.experiments.attacks; the suite itself is
fashion_defenses.attacks.suite).

    python attacks.py [--protocol standard|paper] [--quick] [--images N] [--eps 0.05 0.1 ...]
"""
from fashion_defenses.cli import common_parser, parse_args, positive_float, positive_int, run_main
from fashion_defenses.settings import DEFAULT_EPS


def build_parser():
    parser = common_parser("Robust accuracy of the undefended base CNN under the whole attack suite "
                           "(the sanity baseline of attacks.py).")
    parser.add_argument("--images", type=positive_int, default=None,
                        help="test images attacked (default: the protocol's 1,000; 200 with --quick)")
    parser.add_argument("--eps", type=positive_float, nargs="+", default=None,
                        help="L-inf budgets of FGSM and PGD-20 (default: "
                             f"{' '.join(map(str, DEFAULT_EPS['standard']))}; paper protocol "
                             f"{' '.join(map(str, DEFAULT_EPS['paper']))})")
    return parser


def main():
    args, ctx = parse_args(build_parser())
    # the package's stages load TensorFlow (5-7 s): only once the flags are known to be good
    from fashion_defenses.attacks import suite
    from fashion_defenses.experiments import attacks as stage
    suite.remember_outcomes(ctx.results_dir / ".outcomes")
    stage.run_attacks(ctx, args.images, args.eps)


if __name__ == "__main__":
    run_main(main)
