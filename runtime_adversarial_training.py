"""Adversarial training with examples made per batch: the study's five Table 4 rows
(paper protocol) and FGSM, FGSM-RS, PGD, TRADES and PGD behind the dual filter
compared (standard protocol), each model attacked through every view of it
(fashion_defenses.experiments.runtime_adversarial_training; the recipes and the
trainer are in fashion_defenses.defenses).

    python runtime_adversarial_training.py [--protocol standard|paper] [--quick] [--retrain]
    python runtime_adversarial_training.py --method pgd --eps 0.1 --epochs 10 [--filter dual] [--init NAME]
"""
from fashion_defenses.cli import common_parser, lazy_type, parse_args, positive_float, positive_int, run_main
from fashion_defenses.defenses.recipes import METHODS, Recipe

RECIPE_FLAGS = ("eps", "epochs", "batch_size", "steps", "clean_weight", "beta", "filter", "init")

FILTER = lazy_type("fashion_defenses.defenses.filters", "filter_argument")   # imports TensorFlow when used


def build_parser():
    default = Recipe("pgd")
    parser = common_parser("Adversarial training with examples generated per batch: the study's "
                           "version and the methods an expert compares it with.")
    parser.add_argument("--method", choices=METHODS, default=None,
                        help="train and evaluate one recipe (default: the protocol's whole experiment)")
    parser.add_argument("--retrain", action="store_true", help="train again even if the model is cached")
    recipe = parser.add_argument_group("the recipe of --method (only with --method)")
    recipe.add_argument("--eps", type=positive_float, help=f"L-inf training budget (default: {default.eps:g})")
    recipe.add_argument("--epochs", type=positive_int, help=f"training epochs (default: {default.epochs})")
    recipe.add_argument("--batch-size", type=positive_int, help=f"batch size (default: {default.batch_size})")
    recipe.add_argument("--steps", type=positive_int, help=f"PGD/TRADES inner steps (default: {default.steps})")
    recipe.add_argument("--clean-weight", type=float,
                        help="fgsm/pgd: weight of the clean loss, 0..1 (default: 0, adversarial only)")
    recipe.add_argument("--beta", type=positive_float, help=f"TRADES trade-off (default: {default.beta:g})")
    recipe.add_argument("--filter", type=FILTER,
                        help="input filter in front, e.g. dual (default: none)")
    recipe.add_argument("--init", help="fine-tune this model from --models-dir, name without .keras "
                                       "(default: a fresh CNN; the study's method fine-tunes the base CNN)")
    return parser


def main():
    parser = build_parser()
    args, ctx = parse_args(parser)
    # the package's stages load TensorFlow (5-7 s): only once the flags are known to be good
    from fashion_defenses.attacks import suite
    from fashion_defenses.experiments import runtime_adversarial_training as stage
    suite.remember_outcomes(ctx.results_dir / ".outcomes")
    given = {flag: getattr(args, flag) for flag in RECIPE_FLAGS if getattr(args, flag) is not None}
    if given and not args.method:
        parser.error(f"--{next(iter(given)).replace('_', '-')} sets a recipe: it needs --method")
    if not 0 <= given.get("clean_weight", 0) <= 1:
        parser.error(f"--clean-weight must be in 0..1, got {given['clean_weight']}")
    if args.method:
        stage.run_recipe(ctx, Recipe(args.method, **given), args.retrain)
    elif ctx.protocol.name == "paper":
        stage.run_paper(ctx, args.retrain)
    else:
        stage.run_standard(ctx, args.retrain)


if __name__ == "__main__":
    run_main(main)
