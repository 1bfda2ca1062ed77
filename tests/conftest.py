"""Shared fixtures: the repository on sys.path, real Fashion-MNIST (`make test`
installs it; without it the tests that need it fail with one line saying so) and a
small CNN trained for one quick epoch."""
import importlib
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

# Under pytest-xdist each worker gets its share of the cores: TensorFlow's thread pools
# (read from the environment when it loads, here and in every script a test starts)
# would otherwise each take every core, and the workers would fight over them.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    for variable in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(variable, str(max(1, (os.cpu_count() or 1) // WORKERS)))
sys.path.insert(0, str(ROOT))

from fashion_defenses.cli import run_main  # noqa: E402
from fashion_defenses.data import PROTOCOLS, attack_subset, load_data  # noqa: E402
from fashion_defenses.errors import UserError  # noqa: E402
from fashion_defenses.framework import keras, tf  # noqa: E402
from fashion_defenses.models import build_standard_cnn, compile_model  # noqa: E402


@pytest.fixture(scope="session")
def quick_data():
    try:
        return load_data(PROTOCOLS["standard"], quick=True)
    except UserError as e:
        pytest.fail(f"Fashion-MNIST not installed ({e}): `make data` installs it", pytrace=False)


@keras.saving.register_keras_serializable(package="tests")
class MaskGradient(keras.layers.Layer):
    """Identity on the forward pass, zero gradient: a gradient-masked 'defense' (what
    Square and the sanity checks must see through)."""

    def call(self, x):
        return tf.stop_gradient(x)


@pytest.fixture(scope="session")
def small_model(quick_data):
    """The standard CNN after 2 epochs on 2,000 images: accurate enough (~70%) that
    attacks have something to break."""
    keras.utils.set_random_seed(0)
    m = compile_model(build_standard_cnn(), PROTOCOLS["standard"])
    m.fit(quick_data.x_train, quick_data.y_train, epochs=2, batch_size=64, verbose=0)
    return m


@pytest.fixture(scope="session")
def attack_set(quick_data):
    idx = attack_subset(len(quick_data.y_test), 200)
    return quick_data.x_test[idx], quick_data.y_test[idx].astype(np.int32)


# Every script's --quick run in the standard protocol, in the order of `make quick`, as
# stages of (script, its flags): the scripts of a stage need only the stages before it
# (here, the base CNN) and run side by side; later stages reuse the models earlier ones
# trained, as in a full run.
QUICK_CHAIN = ((("model.py",),),
               (("attacks.py", "--images", "50", "--eps", "0.1"), ("input_preprocessing.py", "--filters", "dual"),
                ("runtime_adversarial_training.py",),
                ("certified_robustness.py", "--sigmas", "0.25", "--images", "10")),
               (("membership_inference.py",),),
               (("evaluation.py", "--train-missing"),))


# The paper protocol's smoke run of the stages the standard chain does not cover in it; its
# evaluation as the pipeline's, one defense's job (the study's "median filter only" row)
# and then the report.
PAPER_QUICK_CHAIN = (("model.py",), ("attacks.py", "--images", "50"), ("input_preprocessing.py",),
                     ("membership_inference.py",), ("evaluate_defense.py", "dual filter (at prediction time)"),
                     ("evaluation.py", "--report"))


@pytest.fixture(scope="session")
def paper_quick_run(tmp_path_factory, quick_data):
    """PAPER_QUICK_CHAIN with --protocol paper, once per session (as quick_run)."""
    root = tmp_path_factory.mktemp("paper_quick_run")
    folders = SimpleNamespace(results=root / "results", models=root / "models", runs={})
    for script, *flags in PAPER_QUICK_CHAIN:
        folders.runs[script] = run_script(script, "--quick", "--protocol", "paper", *flags, "--results-dir",
                                          folders.results, "--models-dir", folders.models)
    return folders


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory, quick_data):
    """QUICK_CHAIN run once for the whole session into one folder: .results and .models
    (the folders) and .runs (script -> its finished process)."""
    root = tmp_path_factory.mktemp("quick_run")
    folders = SimpleNamespace(results=root / "results", models=root / "models", runs={})
    for stage in QUICK_CHAIN:
        procs = {script: subprocess.Popen([sys.executable, script, "--quick", *flags, "--results-dir",
                                           str(folders.results), "--models-dir", str(folders.models)],
                                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for script, *flags in stage}
        for script, proc in procs.items():
            out, err = proc.communicate(timeout=HANG_S)
            folders.runs[script] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return folders


SHARED_FIXTURES = ("quick_run", "paper_quick_run", "healthy_rows")


@pytest.hookimpl(tryfirst=True)   # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items):
    """Under pytest-xdist (`make test` runs two workers), the tests that share an
    expensive fixture go to one worker, which computes it once: each quick run and the
    full evaluation of test_evaluation.py's small model (each worker would otherwise
    compute it for its own share of those tests)."""
    for item in items:
        for fixture in SHARED_FIXTURES:
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(fixture))


# How long a test waits for a process before calling it hung: never a measure of speed.
# Beside a pipeline job holding both cores, a niced suite gets a few percent of the CPU,
# and a quick run that takes 5 minutes alone takes over an hour (seen: a 900 s limit
# expired); CI stops the whole suite at 90 minutes anyway.
HANG_S = 4 * 3600


def run_script(*args, cwd=ROOT, timeout=HANG_S):
    """Run one of the repository's scripts as a user would; returns the finished process."""
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def main_in_process(monkeypatch, capsys, tmp_path):
    """Run a script's main() (by its name, e.g. "attacks") in this process as the shell
    would (its argv, through cli.run_main), in an empty working folder; returns (exit
    code, stderr). Saves the ~4 s of a fresh TensorFlow import that run_script pays."""
    monkeypatch.chdir(tmp_path)

    def run(script, *argv):
        module = importlib.import_module(script)
        monkeypatch.setattr(sys, "argv", [f"{script}.py", *map(str, argv)])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            run_main(module.main)
        return exit_info.value.code, capsys.readouterr().err
    return run


def assert_one_line_error(returncode, stderr):
    """A bad input ends with a non-zero exit and one line on stderr, no traceback."""
    assert returncode not in (0, None)
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "error" in lines[0]
