"""The command line every script shares: the common flags and the run context they
become, argument types, and one-line errors instead of tracebacks. Nothing here
imports TensorFlow until the flags have been checked."""
import argparse
import importlib
import math
import os
import sys
from pathlib import Path

from fashion_defenses.context import RunContext
from fashion_defenses.data import PROTOCOLS
from fashion_defenses.errors import UserError

sys.stdout.reconfigure(line_buffering=True)  # progress shows up in logs as it happens


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Adds '(default: X)' to a flag's help unless the help already states its default
    or there is none to state."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line (and exit code 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _number(text, kind):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {'an integer' if kind is int else 'a number'}: {text!r}") from None


def positive_float(text):
    value = _number(text, float)
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def positive_int(text):
    value = _number(text, int)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def existing_file(text):
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return Path(text)


def seed_int(text):
    value = _number(text, int)
    if not 0 <= value < 2 ** 32:
        raise argparse.ArgumentTypeError(f"must be in 0 .. 2**32-1, got {text}")
    return value


def lazy_type(module, name):
    """An argparse type defined in a module that imports TensorFlow: the module is
    imported when the flag is parsed, not when the parser is built, so --help stays fast."""
    def parse(text):
        return getattr(importlib.import_module(module), name)(text)
    parse.__name__ = name
    return parse


def check_flags_early(module_name, build_parser):
    """Parse the command line before the script imports TensorFlow (5-7 s): --help
    answers at once, and a malformed flag or a missing file is refused at once. A no-op
    when the module is imported rather than run."""
    if module_name == "__main__":
        build_parser().parse_args()


def common_parser(description, results="results"):
    """The flags every script shares; each script adds its own. `results` is where its
    tables go by default (the benchmarks keep theirs apart from the study's)."""
    parser = ArgumentParser(description=description, formatter_class=HelpFormatter)
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="standard",
                        help="'paper' mirrors the study exactly; 'standard' is the rigorous setup")
    parser.add_argument("--seed", type=seed_int, default=None,
                        help="random seed (default: the protocol's, 62861020)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run of a minute or two on a data subset; writes to "
                             "results_quick/ and models/quick/ unless the dirs are given")
    parser.add_argument("--data-dir", default=None,
                        help="folder with the four Fashion-MNIST IDX files (searched first)")
    parser.add_argument("--results-dir", default=None,
                        help=f"where tables and plots go (default: {results}; results_quick with --quick)")
    parser.set_defaults(default_results_dir=results)
    parser.add_argument("--models-dir", default=None,
                        help="model cache (default: models; models/quick with --quick)")
    return parser


def _writable_folder(parser, flag, folder):
    if folder.exists() and not folder.is_dir():
        parser.error(f"{flag} {folder} is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        parser.error(f"{flag} {folder} cannot be created ({e.strerror})")
    if not os.access(folder, os.W_OK):
        parser.error(f"{flag} {folder} is not writable")


def parse_args(parser, argv=None):
    """Parse; check the common flags; return (namespace, RunContext) with the defaults
    that depend on --quick filled in (a quick run never writes over the full results or
    models) and every library seeded."""
    args = parser.parse_args(argv)
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        parser.error(f"--data-dir {args.data_dir} does not exist")
    protocol = PROTOCOLS[args.protocol]
    results_dir = Path(args.results_dir or ("results_quick" if args.quick else args.default_results_dir))
    models_dir = Path(args.models_dir or (os.path.join("models", "quick") if args.quick else "models"))
    _writable_folder(parser, "--results-dir", results_dir)
    _writable_folder(parser, "--models-dir", models_dir)
    ctx = RunContext(protocol=protocol, seed=protocol.seed if args.seed is None else args.seed,
                     quick=args.quick, data_dir=args.data_dir, results_dir=results_dir, models_dir=models_dir)
    from fashion_defenses.framework import keras  # TensorFlow loads here, once the flags are good
    keras.utils.set_random_seed(ctx.seed)
    return args, ctx


def run_main(main):
    """Run a script's main(): a UserError becomes one line on stderr and exit 2, an
    interrupt exit 130 (every stage resumes from what it saved)."""
    try:
        main()
    except UserError as e:
        print(f"{Path(sys.argv[0]).name}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, RuntimeError) as e:
        # Ctrl-C while TensorFlow traces a function reaches us wrapped in a RuntimeError
        if isinstance(e, RuntimeError) and "KeyboardInterrupt" not in str(e):
            raise
        print(f"\n{Path(sys.argv[0]).name}: interrupted; run again to resume", file=sys.stderr)
        sys.exit(130)
