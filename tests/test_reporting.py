"""reporting.py: exact intervals, atomic tables."""
import csv

import numpy as np
import pytest
from scipy.stats import beta

from reporting import accuracy_ci, write_table


def test_accuracy_interval_is_clopper_pearson():
    stats = accuracy_ci([1] * 13 + [0] * 7)   # the study's 65% on 20 images
    assert stats["n"] == 20 and stats["acc"] == 0.65
    assert stats["ci_low"] == pytest.approx(beta.ppf(0.025, 13, 8), abs=1e-9)
    assert stats["ci_high"] == pytest.approx(beta.ppf(0.975, 14, 7), abs=1e-9)
    assert (round(stats["ci_low"], 4), round(stats["ci_high"], 4)) == (0.4078, 0.8461)
    all_right = accuracy_ci(np.ones(1000))
    assert all_right["ci_high"] == 1.0 and all_right["ci_low"] == pytest.approx(0.025 ** (1 / 1000))


def test_write_table_csv_and_markdown(tmp_path):
    rows = [{"model": "a", "n": 10, "acc": 0.5}, {"model": "b", "n": 20, "acc": 0.25}]
    write_table(rows, tmp_path / "t", title="T")
    with open(tmp_path / "t.csv") as f:
        back = list(csv.DictReader(f))
    assert [r["model"] for r in back] == ["a", "b"] and back[1]["acc"] == "0.25"
    md = (tmp_path / "t.md").read_text()
    assert md.startswith("# T") and "| b | 20 | 0.2500 |" in md
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.md"]  # no temp files left


def test_a_stem_with_a_dot_keeps_it(tmp_path):
    write_table([{"a": 1}], tmp_path / "model_eps0.1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_eps0.1.csv", "model_eps0.1.md"]
