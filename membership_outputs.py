"""Query one model of a defense's recipe for membership inference, once, and save its
outputs (results/mia/outputs/<protocol>/<defense>_model<r>.npz): the pipeline's job
for each model (dvc.yaml), after which no model is needed again;
membership_inference.py --from-outputs attacks from the files
(fashion_defenses.experiments.membership_models).

    python membership_outputs.py --defense "PGD AT" --model 0 --models-dir zoo/standard
    python membership_outputs.py --defense "PGD AT" --model 2 --references-dir models/mia-references
"""
from fashion_defenses.cli import check_flags_early, common_parser, parse_args, positive_int, run_main


def build_parser():
    parser = common_parser("Query one model of a defense's recipe (model 0: the defense's own, from --models-dir; "
                           "1 and up: trained when not cached in --references-dir) on the controlled and population "
                           "images and save its outputs, for every defense deploying the same trained model.")
    parser.add_argument("--defense", required=True, help="the defense, by its tables' label or its model key")
    parser.add_argument("--model", type=int, required=True,
                        help="which model of the recipe, 0 (the defense's own) to --models-per-recipe - 1")
    parser.add_argument("--models-per-recipe", type=positive_int, default=4,
                        help="models per recipe in complementary pairs, as membership_inference.py --models")
    parser.add_argument("--members", type=positive_int, default=None,
                        help="members audited per target, as membership_inference.py --members (it sets the design)")
    parser.add_argument("--references-dir", default=None,
                        help="where the recipes' extra models are cached (default: <models-dir>/references)")
    return parser


check_flags_early(__name__, build_parser)


def main():
    args, ctx = parse_args(build_parser())
    from fashion_defenses.experiments import membership_models as stage
    stage.write_model_outputs(ctx, args.members or stage.default_members(ctx), args.models_per_recipe,
                              args.defense, args.model, args.references_dir)


if __name__ == "__main__":
    run_main(main)
