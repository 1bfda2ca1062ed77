"""Our PGD-20 against IBM ART's ProjectedGradientDescent and against the hardware
limit (20 bare forward+backward passes to the input), in one process, on the same
Keras model, test images and settings (L-inf eps 0.1, step 0.01, random start).

    python benchmarks/pgd_vs_art.py [--images 1000] [--batch-size 500] [--repeats 3]
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fashion_defenses.cli import check_flags_early, common_parser, parse_args, positive_int, run_main


def build_parser():
    parser = common_parser(__doc__.splitlines()[0], results="benchmarks/results")
    parser.add_argument("--images", type=positive_int, default=1000, help="test images attacked")
    parser.add_argument("--batch-size", type=positive_int, default=500, help="images per gradient batch")
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed runs; the fastest counts")
    return parser


check_flags_early(__name__, build_parser)

import numpy as np  # noqa: E402
from timing import bare_gradients, best_time  # noqa: E402

from fashion_defenses.attacks import gradient as attacks  # noqa: E402
from fashion_defenses.data import attack_subset, load_data  # noqa: E402
from fashion_defenses.framework import keras, tf  # noqa: E402
from fashion_defenses.models import get_base_model, predict_labels  # noqa: E402
from fashion_defenses.reporting import accuracy_ci, format_acc, write_table  # noqa: E402

EPS, STEP, STEPS = 0.1, 0.01, 20


def main():
    parser = build_parser()
    args, ctx = parse_args(parser)
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import TensorFlowV2Classifier

    data = load_data(ctx.protocol, ctx.data_dir, ctx.quick)
    model, _ = get_base_model(ctx, data)
    idx = attack_subset(len(data.y_test), args.images)
    x, y = data.x_test[idx], data.y_test[idx].astype(np.int32)

    ours_s, x_ours = best_time(lambda: attacks.pgd(model, x, y, eps=EPS, steps=STEPS, step_size=STEP,
                                                   random_start=True, seed=ctx.seed,
                                                   batch_size=args.batch_size), args.repeats)
    classifier = TensorFlowV2Classifier(model, nb_classes=10, input_shape=(28, 28, 1),
                                        loss_object=keras.losses.CategoricalCrossentropy(from_logits=True),
                                        clip_values=(0.0, 1.0))
    art_pgd = ProjectedGradientDescent(classifier, norm=np.inf, eps=EPS, eps_step=STEP, max_iter=STEPS,
                                       num_random_init=1, batch_size=args.batch_size, verbose=False)
    y_onehot = np.eye(10, dtype=np.float32)[y]
    art_s, x_art = best_time(lambda: art_pgd.generate(x, y=y_onehot), args.repeats)
    limit_s, _ = best_time(bare_gradients(model, x, y, args.batch_size, STEPS), args.repeats)

    acc_ours = accuracy_ci(predict_labels(model, x_ours) == y)
    acc_art = accuracy_ci(predict_labels(model, x_art) == y)
    print(f"PGD-{STEPS}, L-inf eps {EPS}, step {STEP}, {args.images} images, batch {args.batch_size}, "
          f"best of {args.repeats}, TF {tf.__version__}, {tf.config.list_physical_devices()[-1].name}")
    print(f"  ours   {ours_s:7.3f} s   robust accuracy {format_acc(acc_ours)}")
    print(f"  ART    {art_s:7.3f} s   robust accuracy {format_acc(acc_art)}")
    print(f"  limit  {limit_s:7.3f} s   ({STEPS} bare forward+backward passes)")
    print(f"  ART / ours = {art_s / ours_s:.2f}x   ours / limit = {ours_s / limit_s:.2f}x")
    print(f"  max |x_adv - x|: ours {np.abs(x_ours - x).max():.4f}, ART {np.abs(x_art - x).max():.4f}")
    rows = [{"implementation": name, "seconds": round(sec, 3), "vs_ours": round(sec / ours_s, 2),
             **({} if acc is None else acc)}
            for name, sec, acc in (("ours (attacks.pgd)", ours_s, acc_ours),
                                   ("IBM ART ProjectedGradientDescent", art_s, acc_art),
                                   (f"limit: {STEPS} bare forward+backward passes", limit_s, None))]
    for row in rows:
        row.setdefault("n", ""), row.setdefault("acc", ""), row.setdefault("ci_low", ""), row.setdefault("ci_high", "")
    import art
    stem = ctx.results_dir / "benchmark_pgd_vs_art"
    write_table(rows, stem, title=(
        f"PGD-{STEPS} (L-inf {EPS}, step {STEP}, random start) on {args.images} test images of the "
        f"{ctx.protocol.name} base CNN, batch {args.batch_size}, best of {args.repeats}; TF {tf.__version__}, "
        f"ART {art.__version__}, {os.cpu_count()} CPU cores, {tf.config.list_physical_devices()[-1].device_type}"))
    print(f"wrote {stem}.csv, {stem}.md")


if __name__ == "__main__":
    run_main(main)
