"""input_preprocessing.py: the filter study's flags and its end-to-end quick run."""
import csv

import pytest
from conftest import assert_one_line_error

from fashion_defenses.defenses import filters
from fashion_defenses.settings import STANDARD_FILTERS


@pytest.mark.parametrize("value", ["median0", "wavelet"])
def test_bad_filter_flag_ends_with_one_line(value, main_in_process):
    assert_one_line_error(*main_in_process("input_preprocessing", "--filters", value))


def test_input_preprocessing_quick_end_to_end(quick_run):
    proc = quick_run.runs["input_preprocessing.py"]
    assert proc.returncode == 0, proc.stderr
    with open(quick_run.results / "input_preprocessing_standard.csv") as f:
        rows = list(csv.DictReader(f))
    dual = [r for r in rows if r["filter"] == "dual" and r["variant"] == "trained"]
    attacks_seen = {r["attack"] for r in dual}
    assert {"clean", "benign", "PGD-20 transfer", "PGD-20", "FGSM-k", "worst case"} <= attacks_seen
    by = {(r["attack"], r["eps"]): float(r["acc"]) for r in dual}
    assert by[("worst case", "0.1")] <= min(acc for (attack, eps), acc in by.items() if float(eps) <= 0.1)
    assert {r["how"] for r in dual if r["attack"] == "PGD-20"} == {"autodiff + BPDA"}
    for name in ("input_preprocessing_standard_eps.png", "input_preprocessing_standard_examples.png",
                 "input_preprocessing_standard_summary.md"):
        assert (quick_run.results / name).exists()
    assert (quick_run.models / "standard_cnn_dual.keras").exists()


def test_the_experiments_filters_are_named_filters():
    """input_preprocessing.py lists its filters above TensorFlow (for --help); each must
    be one of defenses/filters.py's named filters."""
    assert set(STANDARD_FILTERS) <= set(filters.FILTERS)
