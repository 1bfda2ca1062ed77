"""The filter study: the study's "median filter only" row reproduced (paper protocol),
then every filter attacked adaptively in front of the undefended CNN, and the
catalogue's filters (median3, dual) also with a CNN trained behind them (standard
protocol; fashion_defenses.experiments.input_preprocessing).

    python input_preprocessing.py [--protocol standard|paper] [--filters dual median3 ...] [--quick]
"""
from fashion_defenses.cli import common_parser, lazy_type, parse_args, run_main
from fashion_defenses.settings import STANDARD_FILTERS

FILTER = lazy_type("fashion_defenses.defenses.filters", "filter_argument")   # imports TensorFlow when used


def build_parser():
    parser = common_parser("The study's filter defenses, reproduced (paper protocol) and "
                           "attacked adaptively (standard protocol).")
    parser.add_argument("--filters", nargs="+", type=FILTER, default=None,
                        help=f"filters to evaluate (standard protocol; default: {' '.join(STANDARD_FILTERS)}; "
                             "also medianK, bitsK, jpegQ, rotateD)")
    parser.add_argument("--retrain", action="store_true",
                        help="train the CNNs behind the filters again even if cached (standard protocol)")
    return parser


def main():
    parser = build_parser()
    args, ctx = parse_args(parser)
    # the package's stages load TensorFlow (5-7 s): only once the flags are known to be good
    from fashion_defenses.attacks import suite
    from fashion_defenses.experiments import input_preprocessing as stage
    suite.remember_outcomes(ctx.results_dir / ".outcomes")
    if ctx.protocol.name == "paper":
        stage.run_paper(ctx)
    else:
        stage.run_standard(ctx, args.filters, args.retrain)


if __name__ == "__main__":
    run_main(main)
