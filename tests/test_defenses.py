"""defenses/catalogue.py: the paper protocol's catalogue is the study's Table 4, built as the
study built it; a filter at prediction time is put in front of the loaded model."""
import numpy as np

from fashion_defenses.context import RunContext
from fashion_defenses.data import PROTOCOLS, STUDY_TABLE4
from fashion_defenses.defenses import filters
from fashion_defenses.defenses.catalogue import Defense, catalogue
from fashion_defenses.models import build_standard_cnn, save_model


def test_the_paper_catalogue_is_the_studys_table4_made_the_studys_way():
    defenses = catalogue(RunContext(PROTOCOLS["paper"], seed=0), data=None)
    rows = {d.paper_row: d for d in defenses if d.paper_row}
    assert set(rows) == set(STUDY_TABLE4)
    median_only = rows["median filter only"]
    assert (median_only.name, median_only.filter) == ("paper_cnn", "dual")   # the raw CNN, filtered at test time
    at_only = rows["adversarial training only (0.085, 20 ep, batch 16)"]
    dual_at = rows["dual median + AT (0.085, 20 ep, batch 16)"]
    assert at_only.name == dual_at.name == "paper_cnn_at-study_20ep-b16"     # one model, without and with the filter
    assert (at_only.filter, dual_at.filter) == ("", "dual") and at_only.key != dual_at.key
    assert rows["dual median + AT (50 ep, batch 16)"].name == "paper_cnn_at-study_50ep-b16"
    assert rows["dual median + AT (25 ep, batch 32)"].name == "paper_cnn_at-study_25ep-b32"
    assert not any("dual" in d.name for d in defenses)   # nothing is trained behind the filter


def test_the_standard_catalogue_trains_behind_its_filters():
    defenses = catalogue(RunContext(PROTOCOLS["standard"], seed=0), data=None)
    filtered = [d for d in defenses if d.kind == "filter"]
    assert [d.name for d in filtered] == ["standard_cnn_median3", "standard_cnn_dual"]
    assert all(d.filter == "" for d in defenses)
    assert [d.sigma for d in defenses if d.sigma] == [0.12, 0.25, 0.5]


def test_a_filter_at_prediction_time_goes_in_front_of_the_loaded_model(tmp_path):
    cnn = build_standard_cnn()
    save_model(cnn, tmp_path, "cnn", {})
    defense = Defense("dual filter (at prediction time)", "filter", "cnn", train=None, filter="dual")
    model = defense.load(tmp_path)
    assert isinstance(model.layers[0], filters.MedianFilter) and model.layers[0].repeats == 2
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    np.testing.assert_allclose(model(x), cnn(filters.make_filter("dual")(x)), atol=1e-5)
    assert Defense("missing", "filter", "nothing", train=None).load(tmp_path) is None


def test_a_missing_model_is_trained_only_when_asked(tmp_path):
    calls = []

    def train():
        calls.append(1)
        save_model(build_standard_cnn(), tmp_path, "cnn", {})
    defense = Defense("undefended CNN", "undefended", "cnn", train=train)
    assert defense.load(tmp_path) is None and calls == []           # not cached, not asked: skipped
    assert defense.load(tmp_path, train_missing=True) is not None and calls == [1]
    assert defense.load(tmp_path, train_missing=True) is not None and calls == [1]   # cached now: not again
