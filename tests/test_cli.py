"""fashion_defenses/cli.py: bad arguments end in one line; progress reaches a log file as it happens."""
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HANG_S, assert_one_line_error, run_script


@pytest.mark.parametrize("script, argv", [("model", ["--protocol", "nonsense"]),
                                          ("model", ["--data-dir", "/no/such/folder"]),
                                          ("model", ["--seed", "abc"]),
                                          ("model", ["--seed", "-5"]),
                                          ("model", ["--results-dir", "/dev/null/results"]),
                                          ("model", ["--models-dir", "/dev/null"]),
                                          ("attacks", ["--eps", "-0.1"]),
                                          ("attacks", ["--images", "0"])])
def test_bad_arguments_end_with_one_line(script, argv, main_in_process):
    assert_one_line_error(*main_in_process(script, *argv))


def test_a_bad_argument_is_one_line_in_a_real_process_too():
    """The same through a fresh interpreter: nothing else (no TensorFlow start-up
    noise, no traceback) reaches stderr."""
    proc = run_script("attacks.py", "--protocol", "nonsense")
    assert_one_line_error(proc.returncode, proc.stderr)


def test_progress_reaches_a_log_file_before_the_script_ends():
    # stdout to a file or pipe is block-buffered by default: `make all > run.log` would
    # show no progress until a stage ends. The first line must arrive while it runs.
    repo = Path(__file__).resolve().parent.parent
    code = ("import sys; from fashion_defenses import cli; "
            "cli.run_main(lambda: (print('started'), sys.stdin.readline()))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as on a user's machine
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=repo, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        arrived, _, _ = select.select([proc.stdout], [], [], HANG_S)
        assert arrived, "the progress line stayed in the script's buffer"
        assert proc.stdout.readline() == "started\n"
    finally:
        proc.communicate("\n", timeout=HANG_S)
    assert proc.returncode == 0


SCRIPTS = ("model.py", "attacks.py", "input_preprocessing.py", "runtime_adversarial_training.py",
           "certified_robustness.py", "membership_inference.py", "membership_outputs.py", "evaluation.py",
           "evaluate_defense.py", "certify.py", "train.py",
           "benchmarks/pgd_vs_art.py", "benchmarks/autoattack_vs_art.py", "benchmarks/median_filter.py",
           "benchmarks/adversarial_training_speed.py", "benchmarks/certify_speed.py")


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_answers_before_tensorflow_is_imported(script):
    """--help is parsed before the 5-7 s TensorFlow import; every flag has help text and
    states its default at most once."""
    code = ("import runpy, sys\n"
            f"sys.argv = [{script!r}, '--help']\n"
            "try:\n"
            f"    runpy.run_path({script!r}, run_name='__main__')\n"
            "except SystemExit as e:\n"
            "    assert e.code in (0, None), e.code\n"
            "print('TENSORFLOW LOADED' if 'tensorflow' in sys.modules else 'no tensorflow')\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent,
                          capture_output=True, text=True, timeout=HANG_S)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip().endswith("no tensorflow"), proc.stdout[-300:]
    text = " ".join(proc.stdout.split())
    assert "usage:" in text and "(default: None)" not in text
    for chunk in text.split(" --")[1:]:
        assert chunk.count("(default") <= 1, chunk
    lines = proc.stdout.splitlines() + [""]
    for line, after in zip(lines, lines[1:]):
        if line.startswith("  -"):   # an option: its help on the same line (after two spaces) or the next
            assert "  " in line.strip() or after.startswith(" " * 8), f"no help text: {line.strip()}"


def test_a_script_can_keep_its_tables_apart(tmp_path):
    """The benchmarks write into benchmarks/results by default, the study's scripts into
    results; --quick and --results-dir still win."""
    from fashion_defenses.cli import common_parser, parse_args
    apart = str(tmp_path / "benchmarks" / "results")
    assert parse_args(common_parser("b", results=apart), [])[1].results_dir == Path(apart)
    given = parse_args(common_parser("b", results=apart), ["--results-dir", str(tmp_path / "r")])[1]
    assert given.results_dir == tmp_path / "r"
