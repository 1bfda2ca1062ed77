# The whole study, stage by stage. A stage's target is its results CSV, written last
# and atomically, so an interrupted `make all` run again skips the finished stages;
# inside a stage every trained model is cached in models/ and each training resumes
# from its last finished epoch. The committed results/ make `make all` a no-op on a fresh
# clone: `make clean-results all` reproduces them from scratch (models/ are reused).
PYTHON ?= python3
PROTOCOLS = standard paper
R = results
# every stage of the full run records its wall time in $(R)/run_times.{csv,md}
TIMED = $(PYTHON) tools/timed.py --results-dir $(R)

BASE = $(PROTOCOLS:%=$(R)/base_model_%.csv)
ATTACKS = $(PROTOCOLS:%=$(R)/attacks_%.csv)
PREPROCESSING = $(PROTOCOLS:%=$(R)/input_preprocessing_%.csv)
ADVERSARIAL = $(PROTOCOLS:%=$(R)/adversarial_training_%.csv)

# The full run as jobs (dvc.yaml): `make jobs` runs the stale ones one at a time, committing
# each; `make status` tells each job's state from committed files alone.
.PHONY: jobs status dvc all setup data base attacks preprocessing adversarial certify mia evaluation test test-record quick quick-record quick-scripts kill-check bench readme clean-quick clean-results

all: setup base attacks preprocessing adversarial certify mia evaluation readme

setup: data
	@$(PYTHON) -c "import tensorflow, keras, scipy, sklearn, matplotlib" 2>/dev/null || \
	  $(PYTHON) -m pip install -r requirements.txt

# DVC runs the pipeline: installed here when missing, as setup installs TensorFlow
dvc:
	@$(PYTHON) -c "import dvc" 2>/dev/null || $(PYTHON) -m pip install -r requirements-pipeline.txt

jobs: setup dvc
	$(PYTHON) tools/jobs.py run

status: dvc
	@$(PYTHON) tools/jobs.py status

# Debian's package where we can install it; elsewhere Keras downloads the data.
data:
	@test -d /usr/share/datasets/fashion-mnist || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; } || \
	  echo "Fashion-MNIST: not installed system-wide; Keras will download it on first use"

base: $(BASE)
attacks: $(ATTACKS)
preprocessing: $(PREPROCESSING)
adversarial: $(ADVERSARIAL)
certify: $(R)/certified_robustness.csv
mia: $(PROTOCOLS:%=$(R)/membership_inference_%.csv)
evaluation: $(PROTOCOLS:%=$(R)/evaluation_%.csv)

$(R)/base_model_%.csv:
	$(TIMED) $(PYTHON) model.py --protocol $*
$(R)/attacks_%.csv:
	$(TIMED) $(PYTHON) attacks.py --protocol $*
$(R)/input_preprocessing_%.csv:
	$(TIMED) $(PYTHON) input_preprocessing.py --protocol $*
$(R)/adversarial_training_%.csv:
	$(TIMED) $(PYTHON) runtime_adversarial_training.py --protocol $*
# standard protocol only: the study's CNN would need ~55 s per image at n = 100,000
$(R)/certified_robustness.csv:
	$(TIMED) $(PYTHON) certified_robustness.py
# last: it attacks every model the stages before it saved, with two more models of each
# recipe (trained here, cached in models/references/) that serve in turn as targets:
# first the undefended and adversarially trained models with Song et al.'s adversarial
# queries, then every model with clean queries (its table is the stage's target)
$(R)/membership_inference_%.csv:
	$(TIMED) $(PYTHON) membership_inference.py --protocol $* --adversarial-queries
	$(TIMED) $(PYTHON) membership_inference.py --protocol $*
# the very last: one evaluation of every model the stages saved, with their MIA results
$(R)/evaluation_%.csv:
	$(TIMED) $(PYTHON) evaluation.py --protocol $* --train-missing

# the suite installs what it needs first: the runtime, the data and the dev requirements;
# it runs on two workers (pytest-xdist), each quick chain's tests on one
test: setup
	@$(PYTHON) -c "import pytest, xdist, art, dvc" 2>/dev/null || $(PYTHON) -m pip install -r requirements-dev.txt
	$(PYTHON) -m pytest -q -n 2 --dist loadgroup tests

# `make test` timed into benchmarks/results/run_times.* (the README quotes it), with how
# fast the machine is measured just before (benchmarks/machine_speed.py)
test-record: setup
	$(PYTHON) benchmarks/machine_speed.py
	$(PYTHON) tools/timed.py --results-dir benchmarks/results $(MAKE) --no-print-directory test

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
	$(PYTHON) tools/timed.py --results-dir $(R) --summary
	$(PYTHON) tools/redraw_results.py
	$(PYTHON) tools/update_readme.py README.md
	$(PYTHON) tools/update_readme.py benchmarks/README.md

clean-quick:
	rm -rf results_quick models/quick

# everything `make all` writes (`make bench` writes its tables into benchmarks/results/)
clean-results:
	rm -rf $(R)
