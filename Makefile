# The whole study is the pipeline of dvc.yaml, its one declaration: `make all` runs every
# job not current, in order, as `dvc repro` does (the committed results/ make it a no-op
# on a fresh clone); `make jobs` runs them one at a time and commits each with its record;
# `make status` tells each job's state from committed files alone. Inside a job every
# trained model resumes from its last finished epoch and every attack outcome is stored,
# so an interrupted job run again on the same machine continues where it stopped.
PYTHON ?= python3
R = results

.PHONY: jobs status dvc all setup data test test-record quick quick-record quick-scripts kill-check bench readme clean-quick

all: setup dvc
	$(PYTHON) -m dvc repro

setup: data
	@$(PYTHON) -c "import tensorflow, keras, scipy, sklearn, matplotlib" 2>/dev/null || \
	  $(PYTHON) -m pip install -r requirements.txt

# DVC runs the pipeline: installed here when missing, as setup installs TensorFlow
dvc:
	@$(PYTHON) -c "import dvc" 2>/dev/null || $(PYTHON) -m pip install -r requirements-pipeline.txt

jobs: setup dvc
	$(PYTHON) tools/jobs.py run $(ARGS)

status: dvc
	@$(PYTHON) tools/jobs.py status

# Debian's package where we can install it; elsewhere Keras downloads the data.
data:
	@test -d /usr/share/datasets/fashion-mnist || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; } || \
	  echo "Fashion-MNIST: not installed system-wide; Keras will download it on first use"

# the suite installs what it needs first: the runtime, the data and the dev requirements;
# it runs on two workers (pytest-xdist), each quick chain's tests on one
test: setup
	@$(PYTHON) -c "import pytest, xdist, art, dvc" 2>/dev/null || $(PYTHON) -m pip install -r requirements-dev.txt
	$(PYTHON) -m pytest -q -n 2 --dist loadgroup $(PYTEST_FLAGS) tests

# `make test` timed into benchmarks/results/run_times.* (the README quotes it), with how
# fast the machine is measured just before (benchmarks/machine_speed.py), and its ten
# slowest tests in benchmarks/results/slowest_tests.md (the JUnit report asked for through
# pytest's environment, so the timed command is `make test` itself and its record replaces
# the last one of `make test`)
test-record: setup
	$(PYTHON) benchmarks/machine_speed.py
	PYTEST_ADDOPTS=--junitxml=benchmarks/results/suite.xml \
	  $(PYTHON) tools/timed.py --results-dir benchmarks/results $(MAKE) --no-print-directory test
	$(PYTHON) benchmarks/slowest_tests.py benchmarks/results/suite.xml

# Every script's smoke run, into results_quick/ (never over results/), its wall time in
# results_quick/run_times.* (untracked); `make quick-record` times it into
# benchmarks/results/, the record the README publishes.
quick:
	$(PYTHON) tools/timed.py --results-dir results_quick $(MAKE) --no-print-directory quick-scripts
quick-record:
	$(PYTHON) benchmarks/machine_speed.py
	$(PYTHON) tools/timed.py --results-dir benchmarks/results $(MAKE) --no-print-directory quick-scripts
quick-scripts:
	$(PYTHON) tools/quick_chain.py --results-dir results_quick --models-dir models/quick

# The quick chain uninterrupted, then with every stage SIGKILLed at a random moment and
# run again: every table must come out identical (tools/quick_chain.py; 71 minutes on 2
# cores shared with other jobs, 2026-12-01: two chains of about a `make quick` each)
kill-check:
	rm -rf kill_check
	$(PYTHON) tools/quick_chain.py --kill-check --folder kill_check

bench:
	$(PYTHON) -m pip install -q -r requirements-bench.txt
	$(PYTHON) benchmarks/pgd_vs_art.py
	$(PYTHON) benchmarks/autoattack_vs_art.py
	$(PYTHON) benchmarks/median_filter.py
	$(PYTHON) benchmarks/adversarial_training_speed.py
	$(PYTHON) benchmarks/certify_speed.py
	$(PYTHON) benchmarks/exact_resume_cost.py

readme:
	$(PYTHON) tools/redraw_results.py
	$(PYTHON) tools/update_readme.py README.md
	$(PYTHON) tools/update_readme.py benchmarks/README.md

clean-quick:
	rm -rf results_quick models/quick
