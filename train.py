"""Train one model of the study's full run and publish it in the model zoo
(zoo/<protocol>/: weights and architecture, no optimizer state, with its sidecar):
the pipeline's training job (dvc.yaml), or the way to one defense's model without
its technique's whole stage (fashion_defenses.experiments.train).

    python train.py --list [--protocol paper]
    python train.py "PGD AT"                      # a defense's label, its model key or model name
    python train.py --protocol paper paper_cnn_at-study_50ep-b16
"""
from pathlib import Path

from fashion_defenses.cli import check_flags_early, common_parser, parse_args, run_main


def build_parser():
    parser = common_parser("Train one model of the study (by a defense's label, its model key or the model's "
                           "name) into --models-dir, then publish it and any snapshots its run saves in the zoo.")
    parser.add_argument("model", nargs="?", help="what to train, e.g. 'PGD AT' or standard_cnn (see --list)")
    parser.add_argument("--list", action="store_true", help="list the protocol's trainings and exit")
    parser.add_argument("--zoo", type=Path, default=None,
                        help="where the model is published (default: zoo/<protocol>; models/quick/zoo/<protocol> "
                             "with --quick); a run that fine-tunes starts from the model published there")
    parser.add_argument("--retrain", action="store_true",
                        help="train again even if --models-dir holds the model (an interrupted attempt resumes)")
    return parser


check_flags_early(__name__, build_parser)


def main():
    parser = build_parser()
    args, ctx = parse_args(parser)
    if not args.list and not args.model:
        parser.error("name what to train (or --list)")
    from fashion_defenses.experiments import train as stage
    if args.list:
        stage.list_trainings(ctx)
        return
    zoo = args.zoo or (ctx.models_dir / "zoo" if ctx.quick else Path("zoo")) / ctx.protocol.name
    stage.run_training(ctx, args.model, zoo, args.retrain)


if __name__ == "__main__":
    run_main(main)
