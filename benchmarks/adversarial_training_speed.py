"""Seconds per epoch of each adversarial-training method on the standard CNN, and
PGD-7 training against its limit: 7 bare input-gradient passes (the attack) plus
one plain training step per batch, all compiled, at the same batch size. Plain
training through Keras' fit is set beside bare compiled training steps, the least
training can cost, so fit's own overhead is measured.

    python benchmarks/adversarial_training_speed.py [--batches 60] [--repeats 2]
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fashion_defenses.cli import check_flags_early, common_parser, parse_args, positive_int, run_main


def build_parser():
    parser = common_parser(__doc__.splitlines()[0], results="benchmarks/results")
    parser.add_argument("--batches", type=positive_int, default=60, help="training batches timed per method")
    parser.add_argument("--repeats", type=positive_int, default=2, help="timed runs; the fastest counts")
    return parser


check_flags_early(__name__, build_parser)

import numpy as np  # noqa: E402
from timing import bare_gradients, bare_training_steps, best_time  # noqa: E402

from fashion_defenses.data import PROTOCOLS, load_data  # noqa: E402
from fashion_defenses.defenses import adversarial_training as at  # noqa: E402
from fashion_defenses.defenses.recipes import Recipe  # noqa: E402
from fashion_defenses.framework import keras, tf  # noqa: E402
from fashion_defenses.models import build_standard_cnn, compile_model  # noqa: E402
from fashion_defenses.reporting import write_table  # noqa: E402

BATCH = 128


def main():
    parser = build_parser()
    args, ctx = parse_args(parser)
    protocol = PROTOCOLS["standard"]
    data = load_data(protocol, ctx.data_dir)
    n = args.batches * BATCH
    x, y = data.x_train[:n], data.y_train[:n].astype(np.int32)
    per_epoch = len(data.y_train) / n
    rows = []

    def one_pass(fit):
        return lambda: fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)

    for recipe in (Recipe("fgsm"), Recipe("fgsm-rs"), Recipe("pgd", steps=7),
                   Recipe("trades", steps=7)):
        trainer = at.AdversarialTrainer(build_standard_cnn(), recipe, seed=0)
        trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
        seconds, _ = best_time(one_pass(trainer.fit), args.repeats)
        rows.append({"method": recipe.method, "steps": recipe.steps if recipe.method in ("pgd", "trades") else 1,
                     "seconds_per_epoch": round(seconds * per_epoch, 1)})
    plain = compile_model(build_standard_cnn(), protocol)
    plain_s, _ = best_time(one_pass(plain.fit), args.repeats)

    bare = compile_model(build_standard_cnn(), protocol)
    bare_s, _ = best_time(bare_training_steps(bare, x, y, BATCH), args.repeats)
    grads_s, _ = best_time(bare_gradients(plain, x, y, BATCH, 7), args.repeats)
    limit = (plain_s + grads_s) * per_epoch
    rows.append({"method": "plain training (no attack)", "steps": 0,
                 "seconds_per_epoch": round(plain_s * per_epoch, 1)})
    rows.append({"method": "bare training steps (no Keras fit)", "steps": 0,
                 "seconds_per_epoch": round(bare_s * per_epoch, 1)})
    rows.append({"method": "limit for PGD-7: plain step + 7 input gradients", "steps": 7,
                 "seconds_per_epoch": round(limit, 1)})
    pgd = next(r for r in rows if r["method"] == "pgd")["seconds_per_epoch"]
    for r in rows:
        r["vs_limit"] = round(r["seconds_per_epoch"] / limit, 2)
        print(f"  {r['method']:>48}: {r['seconds_per_epoch']:7.1f} s per epoch of 55,000 ({r['vs_limit']:.2f}x limit)")
    print(f"PGD-7 training / limit = {pgd / limit:.2f}x; plain training through fit / bare steps = "
          f"{plain_s / bare_s:.2f}x")
    stem = ctx.results_dir / "benchmark_adversarial_training"
    write_table(rows, stem, title=f"Adversarial training speed, standard CNN, batch {BATCH}, timed on "
                     f"{n:,} images and scaled to an epoch of 55,000, best of {args.repeats}; "
                     f"{os.cpu_count()} CPU cores, TF {tf.__version__}")
    print(f"wrote {stem}.csv, {stem}.md")


if __name__ == "__main__":
    run_main(main)
