"""cli.py: bad arguments end in one line; progress reaches a log file as it happens."""
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

import attacks
import model
from conftest import assert_one_line_error, run_script


@pytest.mark.parametrize("script, argv", [(model, ["--protocol", "nonsense"]),
                                          (model, ["--data-dir", "/no/such/folder"]),
                                          (model, ["--seed", "abc"]),
                                          (model, ["--seed", "-5"]),
                                          (model, ["--results-dir", "/dev/null/results"]),
                                          (model, ["--models-dir", "/dev/null"]),
                                          (attacks, ["--eps", "-0.1"]),
                                          (attacks, ["--images", "0"])])
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
    code = "import cli, sys; cli.run_main(lambda: (print('started'), sys.stdin.readline()))"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as on a user's machine
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=repo, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        arrived, _, _ = select.select([proc.stdout], [], [], 60)
        assert arrived, "the progress line stayed in the script's buffer"
        assert proc.stdout.readline() == "started\n"
    finally:
        proc.communicate("\n", timeout=120)
    assert proc.returncode == 0
