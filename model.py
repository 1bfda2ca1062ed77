"""The base CNN of a protocol: train it (or load it from models/), test it on every
split, plot its training curve (fashion_defenses.experiments.model).

    python model.py [--protocol standard|paper] [--quick] [--retrain]
"""
from fashion_defenses.cli import common_parser, parse_args, run_main


def build_parser():
    parser = common_parser("Train (or load) and test the protocol's undefended base CNN.")
    parser.add_argument("--retrain", action="store_true", help="ignore the cached model")
    return parser


def main():
    args, ctx = parse_args(build_parser())
    # the package's stages load TensorFlow (5-7 s): only once the flags are known to be good
    from fashion_defenses.experiments import model as stage
    stage.run_base_model(ctx, retrain=args.retrain)


if __name__ == "__main__":
    run_main(main)
