"""Evaluate one defense of the catalogue as evaluation.py evaluates every defense, and
write only its record and per-image flags (results/per_image/evaluation_<protocol>/):
the pipeline's evaluation job for each defense (dvc.yaml); `evaluation.py --report`
makes the tables from the records (fashion_defenses.experiments.evaluate_defense).

    python evaluate_defense.py "PGD AT" --models-dir zoo/standard
    python evaluate_defense.py --protocol paper "dual + study AT 25 ep b32" --models-dir zoo/paper

A smoothed classifier's clean rows (PREDICT on 20,000 images, about 85 epochs of the
standard CNN's compute) can be a job of their own:

    python evaluate_defense.py "smoothing sigma 0.25" --models-dir zoo/standard --only-clean
    python evaluate_defense.py "smoothing sigma 0.25" --models-dir zoo/standard \
        --clean-rows results/per_image/evaluation_standard/standard_cnn_noise0.25.clean.json
"""
from pathlib import Path

from fashion_defenses.cli import check_flags_early, common_parser, parse_args, run_main


def build_parser():
    parser = common_parser("Evaluate one defense (every attack of the suite, AutoAttack and the sanity checks) "
                           "from its model in --models-dir and the protocol's undefended CNN beside it; write its "
                           "record and per-image flags, no tables.")
    parser.add_argument("defense", help="the defense, by its tables' label or its model key, e.g. 'PGD AT'")
    part = parser.add_mutually_exclusive_group()
    part.add_argument("--only-clean", action="store_true",
                      help="measure only its clean accuracy (test set, 10,000 training images) and write it beside "
                           "its record as <key>.clean.json")
    part.add_argument("--clean-rows", type=Path, metavar="FILE",
                      help="its clean accuracy as --only-clean wrote it, instead of measuring it again")
    return parser


check_flags_early(__name__, build_parser)


def main():
    args, ctx = parse_args(build_parser())
    # the package's stages load TensorFlow (5-7 s): only once the flags are known to be good
    from fashion_defenses.attacks import suite
    from fashion_defenses.experiments import evaluate_defense as stage
    suite.remember_outcomes(ctx.results_dir / ".outcomes")
    if args.only_clean:
        stage.run_clean_job(ctx, args.defense)
    else:
        stage.run_defense_job(ctx, args.defense, args.clean_rows)


if __name__ == "__main__":
    run_main(main)
