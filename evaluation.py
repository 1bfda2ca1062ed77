"""One uniform evaluation of every defense of a protocol, or of your own Keras model
(--model): clean accuracy, robustness under the attack suite and AutoAttack,
membership inference and the sanity checks, every figure with n and an exact 95%
interval; under --protocol paper the study's Table 4 beside ours
(fashion_defenses.experiments.evaluation; from Python: fashion_defenses.evaluate).

    python evaluation.py [--protocol standard|paper] [--train-missing] [--quick]
    python evaluation.py --model my_cnn.keras [--filter dual | --sigma 0.25]
    python evaluation.py --report   # the tables from the records of evaluate_defense.py (the pipeline's jobs)
"""
from fashion_defenses.cli import common_parser, existing_file, lazy_type, parse_args, positive_float, run_main
from fashion_defenses.errors import UserError

FILTER = lazy_type("fashion_defenses.defenses.filters", "filter_argument")   # imports TensorFlow when used


def build_parser():
    parser = common_parser("Evaluate every defense the same way, with sanity checks; the study's Table 4 "
                           "beside ours under --protocol paper.")
    parser.add_argument("--train-missing", action="store_true",
                        help="train defenses whose model is not cached, through their technique scripts")
    parser.add_argument("--defenses", type=lambda text: [t.strip() for t in text.split(",") if t.strip()],
                        default=None, help="evaluate only these defenses of the catalogue, by label or model key, "
                                           "comma-separated (tables go to evaluation_<protocol>_subset.*)")
    parser.add_argument("--report", action="store_true",
                        help="attack nothing: the tables and figures of every defense whose record "
                             "evaluate_defense.py wrote (the pipeline's report)")
    parser.add_argument("--model", type=existing_file, default=None,
                        help="evaluate this Keras file instead (28x28x1 inputs in [0, 1], 10 logits or probabilities)")
    parser.add_argument("--sigma", type=positive_float, default=0.0,
                        help="with --model: judge and attack the smoothed classifier around it at this noise level")
    parser.add_argument("--filter", type=FILTER, default=None,
                        help="with --model: put this input filter in front of it (dual, median3, bits3, ...)")
    return parser


def main():
    parser = build_parser()
    args, ctx = parse_args(parser)
    # the package's stages load TensorFlow (5-7 s): only once the flags are known to be good
    from fashion_defenses.attacks import suite
    from fashion_defenses.experiments import evaluation as stage
    suite.remember_outcomes(ctx.results_dir / ".outcomes")
    if (args.sigma or args.filter) and not args.model:
        raise UserError("--sigma and --filter apply to --model only")
    chosen = [flag for flag, given in (("--report", args.report), ("--defenses", args.defenses),
                                        ("--model", args.model)) if given]
    if len(chosen) > 1:
        raise UserError(f"{' and '.join(chosen)} exclude each other")
    stage.run_evaluation(ctx, args.train_missing, args.defenses, args.model, args.sigma, args.filter,
                         report=args.report)


if __name__ == "__main__":
    run_main(main)
