# The whole study, stage by stage. Every stage caches its models (models/) and
# resumes, so an interrupted `make all` redone repeats only what was not finished.
PYTHON ?= python3
PROTOCOLS = standard paper

.PHONY: all setup data base attacks preprocessing test quick bench readme clean-quick

all: setup base attacks preprocessing readme

setup: data
	@$(PYTHON) -c "import tensorflow, keras, scipy, sklearn, matplotlib" 2>/dev/null || \
	  $(PYTHON) -m pip install -r requirements.txt

# Debian's package where we can install it; elsewhere Keras downloads the data.
data:
	@test -d /usr/share/datasets/fashion-mnist || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; } || \
	  echo "Fashion-MNIST: not installed system-wide; Keras will download it on first use"

base:
	for p in $(PROTOCOLS); do $(PYTHON) model.py --protocol $$p || exit 1; done

attacks: base
	for p in $(PROTOCOLS); do $(PYTHON) attacks.py --protocol $$p || exit 1; done

preprocessing: base
	for p in $(PROTOCOLS); do $(PYTHON) input_preprocessing.py --protocol $$p || exit 1; done

test:
	$(PYTHON) -m pytest -q tests

# Every script's smoke run, into results_quick/ (never over results/).
quick:
	for p in $(PROTOCOLS); do $(PYTHON) model.py --quick --protocol $$p && \
	  $(PYTHON) attacks.py --quick --protocol $$p && \
	  $(PYTHON) input_preprocessing.py --quick --protocol $$p || exit 1; done

bench: base
	$(PYTHON) -m pip install -q -r requirements-bench.txt
	$(PYTHON) benchmarks/pgd_vs_art.py
	$(PYTHON) benchmarks/median_filter.py

clean-quick:
	rm -rf results_quick models/quick

readme:
	$(PYTHON) tools/update_readme.py
