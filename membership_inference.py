"""Membership inference against every defense of a protocol, the way the LiRA and RMIA
papers run it: complementary pairs of models of each defense's recipe, all of the
target's size, each in turn the target of the other pairs; RMIA, LiRA, the loss attack and the study's
rule, with each target's leakage against the undefended CNN's and the verdict that
holds on every target (fashion_defenses.experiments.membership_inference).

    python membership_inference.py [--protocol standard|paper] [--models 4] [--match-all]
                                   [--adversarial-queries] [--quick]
    python membership_inference.py --from-outputs    # the attacks alone, from the outputs
                                                     # membership_outputs.py saved, model by model
"""
from fashion_defenses.cli import common_parser, parse_args, positive_int, run_main


def build_parser():
    parser = common_parser("Membership inference against every defense of a protocol whose model is cached, "
                           "each target calibrated on other models of its own recipe and size.")
    parser.add_argument("--models", type=positive_int, default=4,
                        help="models per recipe, the defense's own included, in complementary pairs (an even number, "
                             "4 or more), each in turn the target of the other pairs (1: the defense's own only, "
                             "attacks that need no references)")
    parser.add_argument("--match-all", action="store_true",
                        help="train the extra models for every defense, the paper protocol's adversarial training too")
    parser.add_argument("--members", type=positive_int, default=None,
                        help="members and non-members audited per target (default: every controlled image in the "
                             "standard protocol; the study's 2,000 in the paper's, 200 with --quick)")
    parser.add_argument("--adversarial-queries", action="store_true",
                        help="query with the suite's PGD-10 examples at L-inf 0.1 (Song et al.), the undefended "
                             "and adversarially trained models only, threshold attacks only")
    parser.add_argument("--from-outputs", action="store_true",
                        help="attack every defense of the protocol from the outputs membership_outputs.py saved: no "
                             "model is loaded or trained, a missing or outdated output file is an error")
    parser.add_argument("--references-dir", default=None,
                        help="where the recipes' extra models are cached (default: <models-dir>/references)")
    return parser


def main():
    parser = build_parser()
    args, ctx = parse_args(parser)
    # the package's stages load TensorFlow (5-7 s): only once the flags are known to be good
    from fashion_defenses.experiments import membership_inference as stage
    from fashion_defenses.experiments.membership_models import default_members
    stage.run_membership_inference(ctx, args.members or default_members(ctx), args.models, args.match_all,
                                   args.adversarial_queries, args.references_dir, args.from_outputs)


if __name__ == "__main__":
    run_main(main)
