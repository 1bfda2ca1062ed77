"""input_preprocessing.py: the filter study's flags and its end-to-end quick run."""
import csv
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import assert_one_line_error

from fashion_defenses.attacks import suite
from fashion_defenses.data import STUDY_TABLE4, attack_subset
from fashion_defenses.defenses import filters
from fashion_defenses.experiments import input_preprocessing as stage
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
    title = (quick_run.results / "input_preprocessing_standard_summary.md").read_text().splitlines()[0]
    assert title.endswith("attacks on 100"), title   # dual and bits3: no randomized filter to name


def test_the_summary_title_names_the_randomized_filters_images_only_when_one_ran():
    full, quick = SimpleNamespace(quick=False), SimpleNamespace(quick=True)
    assert stage.summary_title(full, ["dual", "rotate10"], 10000, 1000).endswith(
        "attacks on 1,000 (a randomized filter on the first 500 of them)")
    assert stage.summary_title(quick, ["rotate10"], 2000, 100).endswith("(a randomized filter on the first 50 of them)")
    assert stage.summary_title(full, ["dual", "bits3", "median3"], 10000, 1000).endswith("attacks on 1,000")


def test_the_experiments_filters_are_named_filters():
    """input_preprocessing.py lists its filters above TensorFlow (for --help); each must
    be one of defenses/filters.py's named filters."""
    assert set(STANDARD_FILTERS) <= set(filters.FILTERS)


def test_a_randomized_filter_is_attacked_on_the_first_fixed_images_only(small_model, quick_data):
    """rotate10 (random, attacked with EOT) on the first 20 of 40 fixed images, with
    the transfer examples of those 20; the deterministic filter on all 40; with no
    fewer to keep, the images pass through as they are."""
    idx = attack_subset(len(quick_data.y_test), 40)
    x, y = quick_data.x_test[idx], quick_data.y_test[idx]
    transfer = suite.transfer_examples(small_model, x, y, (0.1,), "FGSM-k", 0)
    settings = dict(protocol="standard", seed=0, eps_grid=(0.1,), n_randomized=20, autoattack=False)
    measured = {}
    for name in ("rotate10", "bits3"):
        model = filters.with_filter(filters.make_filter(name), small_model)
        rows = stage.evaluate_filter_model(model, name, "test-time", quick_data, idx, transfer, **settings)
        measured[name] = {r["n"] for r in rows if r["attack"] != "clean"}
    assert measured == {"rotate10": {20}, "bits3": {40}}
    first = attack_subset(len(quick_data.y_test), 20)
    kept, kept_transfer = suite.randomized_images(idx, transfer, len(quick_data.y_test), 20)
    assert np.array_equal(kept, first)
    rows_of_first = np.isin(idx, first)
    for (label, eps, x_adv), (label_kept, eps_kept, x_kept) in zip(transfer, kept_transfer):
        assert (label, eps) == (label_kept, eps_kept) and np.array_equal(x_kept, x_adv[rows_of_first])
    assert suite.randomized_images(idx, transfer, len(quick_data.y_test), 40)[0] is idx   # nothing to cut


def test_the_studys_filter_row_quick_end_to_end_in_the_paper_protocol(paper_quick_run):
    """input_preprocessing.py --protocol paper: the study's 'median filter only' row, each
    figure of ours beside the study's where it reports one, on the study's own sets."""
    proc = paper_quick_run.runs["input_preprocessing.py"]
    assert proc.returncode == 0, proc.stderr
    with open(paper_quick_run.results / "input_preprocessing_paper.csv") as f:
        rows = {r["attack"]: r for r in csv.DictReader(f)}
    assert {r["filter"] for r in rows.values()} == {"dual"}
    assert float(rows["clean (test set)"]["study"]) == STUDY_TABLE4["median filter only"]["test_acc"]
    assert float(rows["clean (train set)"]["study"]) == STUDY_TABLE4["median filter only"]["train_acc"]
    study_sets = [r for a, r in rows.items() if "20 with replacement (study)" in a]
    assert study_sets and all(r["n"] == "20" for r in study_sets)
    for r in rows.values():
        assert float(r["ci_low"]) <= float(r["acc"]) <= float(r["ci_high"])

