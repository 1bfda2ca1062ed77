"""Our APGD-CE and Square (attacks/autoattack.py) against IBM ART's AutoProjectedGradientDescent
and SquareAttack, in one process, on the same Keras model, test images and settings
(L-inf eps, APGD 100 iterations from one random start, Square 5,000 queries with
p_init 0.8); APGD against its hardware limit, 101 bare forward+backward passes; and
FAB-T (one target, 100 iterations, on the images the model gets right) against its
limit, 100 bare forward+backward passes each followed by a forward pass. IBM ART has no
FAB attack, so FAB-T has no peer row.

    python benchmarks/autoattack_vs_art.py [--model standard_cnn_at-pgd_eps0.1] [--images 1000] [--eps 0.1]
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fashion_defenses.cli import check_flags_early, common_parser, parse_args, positive_float, positive_int, run_main
from fashion_defenses.errors import UserError


def build_parser():
    parser = common_parser(__doc__.splitlines()[0], results="benchmarks/results")
    parser.add_argument("--model", default=None,
                        help="a cached model of --models-dir, by name (default: the protocol's base CNN; a robust one, "
                             "e.g. standard_cnn_at-pgd_eps0.1, makes Square run its whole budget)")
    parser.add_argument("--images", type=positive_int, default=1000, help="test images attacked")
    parser.add_argument("--eps", type=positive_float, default=None,
                        help="L-inf budget (default: suite.HEADLINE_EPS, the budget of the headline figures)")
    parser.add_argument("--batch-size", type=positive_int, default=500, help="images per batch, ours and ART's")
    parser.add_argument("--repeats", type=positive_int, default=1,
                        help="timed runs after a warm-up; the fastest counts")
    return parser


check_flags_early(__name__, build_parser)

import numpy as np  # noqa: E402 (the imports below load TensorFlow: after --help)
from timing import bare_gradients, best_time  # noqa: E402

from fashion_defenses.attacks import autoattack, suite  # noqa: E402
from fashion_defenses.data import attack_subset, load_data  # noqa: E402
from fashion_defenses.framework import keras, tf  # noqa: E402
from fashion_defenses.models import get_base_model, load_model, predict_labels  # noqa: E402
from fashion_defenses.reporting import accuracy_ci, format_acc, write_table  # noqa: E402


def no_warmup():
    return None


def main():
    parser = build_parser()
    args, ctx = parse_args(parser)
    args.eps = args.eps or suite.HEADLINE_EPS
    import art
    from art.attacks.evasion import AutoProjectedGradientDescent, SquareAttack
    from art.estimators.classification import TensorFlowV2Classifier

    data = load_data(ctx.protocol, ctx.data_dir, ctx.quick)
    if args.model:
        model, _ = load_model(ctx.models_dir, args.model)
        if model is None:
            raise UserError(f"no model {args.model} in {ctx.models_dir}")
    else:
        model, _ = get_base_model(ctx, data)
    idx = attack_subset(len(data.y_test), args.images)
    x, y = data.x_test[idx], data.y_test[idx].astype(np.int32)
    y_onehot = np.eye(10, dtype=np.float32)[y]
    classifier = TensorFlowV2Classifier(model, nb_classes=10, input_shape=(28, 28, 1), clip_values=(0.0, 1.0),
                                        loss_object=keras.losses.CategoricalCrossentropy(from_logits=True))
    apgd, square, fab = suite.SUITE["APGD-CE"], suite.SUITE["Square"], suite.SUITE["FAB-T"]
    iterations, queries = dict(apgd.settings)["iterations"], dict(square.settings)["queries"]
    fab_iterations = dict(fab.settings)["iterations"]
    right = predict_labels(model, x) == y
    x_right, y_right = x[right], y[right]
    art_apgd = AutoProjectedGradientDescent(classifier, norm=np.inf, eps=args.eps, eps_step=2 * args.eps,
                                            max_iter=iterations, nb_random_init=1, batch_size=args.batch_size,
                                            loss_type="cross_entropy", verbose=False)
    art_square = SquareAttack(classifier, norm=np.inf, eps=args.eps, max_iter=queries, p_init=0.8, nb_restarts=1,
                              batch_size=args.batch_size, verbose=False)
    # warm-ups: ours and the limit trace their compiled functions (Square on a slice, its
    # full run being long); ART has nothing to trace and runs cold
    runs = [("APGD-CE", "ours (autoattack.apgd)", lambda: apgd.run(model, x, y, args.eps, ctx.seed), None),
            ("APGD-CE", "IBM ART AutoProjectedGradientDescent", lambda: art_apgd.generate(x, y=y_onehot), no_warmup),
            ("APGD-CE", f"limit: {iterations + 1} bare forward+backward passes",
             bare_gradients(model, x, y, args.batch_size, iterations + 1), None),
            ("Square", "ours (autoattack.square)", lambda: square.run(model, x, y, args.eps, ctx.seed),
             lambda: square.run(model, x[:100], y[:100], args.eps, ctx.seed)),
            ("Square", "IBM ART SquareAttack", lambda: art_square.generate(x, y=y_onehot), no_warmup),
            ("FAB-T, 1 target", "ours (autoattack.fab_targeted)",
             lambda: autoattack.fab_targeted(model, x, y, eps=args.eps, target_classes=1,
                                             iterations=fab_iterations, batch_size=args.batch_size),
             lambda: autoattack.fab_targeted(model, x[:100], y[:100], eps=args.eps, target_classes=1, iterations=2)),
            ("FAB-T, 1 target", f"limit: {fab_iterations} x (forward+backward, forward) on the {len(y_right)} "
                                "images it attacks",
             bare_gradients(model, x_right, y_right, args.batch_size, fab_iterations, forwards=1), None)]
    rows, ours = [], {}
    for attack, implementation, run, warmup in runs:
        seconds, x_adv = best_time(run, args.repeats, warmup)
        limit = implementation.startswith("limit")
        stats = {"n": "", "acc": "", "ci_low": "", "ci_high": ""} if limit else \
            accuracy_ci(predict_labels(model, x_adv) == y)
        ours.setdefault(attack, seconds)
        rows.append({"attack": attack, "implementation": implementation, "seconds": round(seconds, 2),
                     "vs_ours": round(seconds / ours[attack], 2), **stats})
        print(f"  {attack:>8} {implementation:>44} {seconds:8.2f} s  " + ("" if limit else format_acc(stats)))
    stem = ctx.results_dir / "benchmark_autoattack_vs_art"
    write_table(rows, stem, title=(
        f"APGD-CE ({iterations} iterations, 1 random start), Square ({queries} queries, p_init 0.8) and FAB-T (1 "
        f"target, {fab_iterations} iterations; IBM ART has no FAB), L-inf eps "
        f"{args.eps:g}, on {args.images} test images of {args.model or f'the {ctx.protocol.name} base CNN'}, "
        f"batch {args.batch_size}, fastest of {args.repeats} (ours after a warm-up that traces it, ART cold); "
        f"TF {tf.__version__}, ART {art.__version__}, {os.cpu_count()} CPU "
        f"cores, {tf.config.list_physical_devices()[-1].device_type}; vs_ours: time over ours"))
    print(f"wrote {stem}.csv, {stem}.md")


if __name__ == "__main__":
    run_main(main)
