"""What exact resumption costs: seconds per epoch of the standard CNN on the 55,000
training images with validation, trained (a) as the repository trained before, one
Keras fit with its own shuffling, EarlyStopping and BackupAndRestore, and (b) through
model.fit_epochs, one fit per epoch with every random stream seeded from the epoch and a
checkpoint (weights, optimizer, best epoch) after each.

    python benchmarks/exact_resume_cost.py [--epochs 3] [--repeats 2]
"""
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fashion_defenses.cli import check_flags_early, common_parser, parse_args, positive_int, run_main


def build_parser():
    parser = common_parser(__doc__.splitlines()[0], results="benchmarks/results")
    parser.add_argument("--epochs", type=positive_int, default=3, help="epochs timed per way of training")
    parser.add_argument("--repeats", type=positive_int, default=2, help="timed runs; the fastest counts")
    return parser


check_flags_early(__name__, build_parser)

from timing import best_time  # noqa: E402

from fashion_defenses.data import PROTOCOLS, load_data  # noqa: E402
from fashion_defenses.framework import keras, tf  # noqa: E402
from fashion_defenses.models import build_standard_cnn, compile_model  # noqa: E402
from fashion_defenses.reporting import write_table  # noqa: E402
from fashion_defenses.training import KeepBest, fit_epochs  # noqa: E402


def main():
    parser = build_parser()
    args, ctx = parse_args(parser)
    protocol = PROTOCOLS["standard"]
    data = load_data(protocol, ctx.data_dir)
    folder = Path(tempfile.mkdtemp())

    def keras_fit():
        shutil.rmtree(folder / "backup", ignore_errors=True)
        model = compile_model(build_standard_cnn(), protocol)
        callbacks = [keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=protocol.early_stopping_patience,
                                                   restore_best_weights=True),
                     keras.callbacks.BackupAndRestore(str(folder / "backup"))]
        model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), epochs=args.epochs,
                  batch_size=protocol.batch_size, shuffle=True, callbacks=callbacks, verbose=0)

    def exact():
        model = compile_model(build_standard_cnn(), protocol)
        fit_epochs(model, data.x_train, data.y_train, epochs=args.epochs, batch_size=protocol.batch_size,
                   seed=ctx.seed, checkpoint_dir=folder / "exact", validation_data=(data.x_val, data.y_val),
                   keep_best=KeepBest("val_accuracy", patience=protocol.early_stopping_patience))

    rows = []
    for label, run in (("one Keras fit: its shuffle, EarlyStopping, BackupAndRestore", keras_fit),
                       ("fit_epochs: a fit per epoch, seeded streams, checkpoint per epoch", exact)):
        seconds, _ = best_time(run, args.repeats, warmup=lambda: None)
        rows.append({"training": label, "epochs": args.epochs, "seconds_per_epoch": round(seconds / args.epochs, 2)})
    for r in rows:
        r["vs_keras_fit"] = round(r["seconds_per_epoch"] / rows[0]["seconds_per_epoch"], 3)
        print(f"  {r['training']:>66}: {r['seconds_per_epoch']:6.2f} s per epoch ({r['vs_keras_fit']:.3f}x)")
    shutil.rmtree(folder, ignore_errors=True)
    stem = ctx.results_dir / "benchmark_exact_resume"
    write_table(rows, stem, title=f"Cost of exact resumption: the standard CNN on {len(data.y_train):,} images with "
                     f"validation, batch {protocol.batch_size}, {args.epochs} epochs from a fresh model, fastest of "
                     f"{args.repeats}; {os.cpu_count()} CPU cores, TF {tf.__version__}")
    print(f"wrote {stem}.csv, {stem}.md")


if __name__ == "__main__":
    run_main(main)
