"""How fast this machine is, in the unit every time of the repository is quoted in:
seconds per epoch of the standard base CNN on its 55,000 training images (batch and
optimizer of the standard protocol, one untimed warm-up epoch first, fastest of the
timed ones). tools/timed.py reads it from benchmarks/results/machine_speed.csv for
the make targets it times there (make test-record, make quick-record).

    python benchmarks/machine_speed.py [--repeats 2]
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fashion_defenses.cli import check_flags_early, common_parser, parse_args, positive_int, run_main


def build_parser():
    parser = common_parser(__doc__.splitlines()[0], results="benchmarks/results")
    parser.add_argument("--repeats", type=positive_int, default=2, help="timed epochs; the fastest counts")
    return parser


check_flags_early(__name__, build_parser)

from timing import best_time  # noqa: E402

from fashion_defenses.data import PROTOCOLS, load_data  # noqa: E402
from fashion_defenses.framework import keras, tf  # noqa: E402
from fashion_defenses.models import build_standard_cnn, compile_model  # noqa: E402
from fashion_defenses.reporting import write_table  # noqa: E402


def main():
    args, ctx = parse_args(build_parser())
    protocol = PROTOCOLS["standard"]
    data = load_data(protocol, ctx.data_dir)
    keras.utils.set_random_seed(ctx.seed)
    model = compile_model(build_standard_cnn(), protocol)

    def epoch():
        model.fit(data.x_train, data.y_train, epochs=1, batch_size=protocol.batch_size, verbose=0)

    seconds, _ = best_time(epoch, args.repeats)
    row = {"seconds_per_epoch": round(seconds, 1), "images": len(data.y_train), "batch_size": protocol.batch_size,
           "cpus": os.cpu_count(), "tensorflow": tf.__version__}
    print(f"  the standard base CNN: {row['seconds_per_epoch']} s per epoch on {row['images']:,} images")
    stem = ctx.results_dir / "machine_speed"
    write_table([row], stem, title=f"Machine speed: one epoch of the standard base CNN, fastest of {args.repeats} "
                                   "after a warm-up epoch")
    print(f"wrote {stem}.csv, {stem}.md")


if __name__ == "__main__":
    run_main(main)
