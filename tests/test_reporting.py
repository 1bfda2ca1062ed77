"""fashion_defenses/reporting.py: exact intervals, atomic tables."""
import csv

import numpy as np
import pytest
from scipy.stats import beta

from fashion_defenses import reporting
from fashion_defenses.reporting import accuracy_ci, write_table


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
    assert md.startswith("# T") and "| b | 20 | 0.25 |" in md
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.md"]  # no temp files left


def test_a_stem_with_a_dot_keeps_it(tmp_path):
    write_table([{"a": 1}], tmp_path / "model_eps0.1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_eps0.1.csv", "model_eps0.1.md"]


def test_markdown_merges_accuracy_with_its_interval_and_states_constant_columns_once(tmp_path):
    rows = [{"protocol": "standard", "attack": "FGSM", "eps": 0.1, "n": 1000, "acc": 0.832, "ci_low": 0.8251,
             "ci_high": 0.8390},
            {"protocol": "standard", "attack": "PGD-20", "eps": 0.1, "n": 1000, "acc": 0.0, "ci_low": 0.0,
             "ci_high": 0.0037}]
    reporting.write_table(rows, tmp_path / "t", title="A table")
    text = (tmp_path / "t.md").read_text()
    assert "In every row: protocol standard; eps 0.1; n 1000." in text
    assert "| attack | accuracy % [95%] |" in text and "| FGSM | 83.2 [82.5, 83.9] |" in text
    assert "0.832" not in text and "| PGD-20 | 0.0 [0.0, 0.4] |" in text


def test_rerendering_from_the_csv_gives_what_writing_gave_and_leaves_digests_alone(tmp_path):
    rows = [{"model": "m", "sigma": 0.25, "seed": 62861020, "acc": 0.7, "ci_low": 0.65, "ci_high": 0.75,
             "note": "x"}, {"model": "m2", "sigma": 0.5, "seed": 62861020, "acc": 0.5, "ci_low": 0.45,
                            "ci_high": 0.55, "note": "y"}]
    reporting.write_table(rows, tmp_path / "plain", title="Plain", note="A note.")
    reporting.write_table(rows, tmp_path / "digest", title="Digest", markdown_rows=[{"only": "this"}])
    written = {p: (tmp_path / p).read_text() for p in ("plain.md", "digest.md")}
    assert "seed 62861020" in written["plain.md"] and written["plain.md"].rstrip().endswith("A note.")
    assert reporting.rerender_markdown(tmp_path) == []          # nothing changes
    assert {p: (tmp_path / p).read_text() for p in written} == written
    # a table written by an older rendering (raw columns, fractions) is brought up to date
    old = "# Plain\n\n| model | sigma | seed | acc | ci_low | ci_high | note |\n|---|---|---|---|---|---|---|\n" \
          "| m | 0.2500 | 62861020 | 0.7000 | 0.6500 | 0.7500 | x |\n| m2 | 0.5000 | 62861020 | 0.5000 | 0.4500 | " \
          "0.5500 | y |\n\nA note.\n"
    (tmp_path / "plain.md").write_text(old)
    assert reporting.rerender_markdown(tmp_path) == ["plain.md"]
    assert (tmp_path / "plain.md").read_text() == written["plain.md"]


def test_the_studys_budget_reads_as_the_study_wrote_it(tmp_path):
    """20/255 in an eps column and in a column's '@eps', whether the CSV holds it to 4
    decimals or in full; other budgets as numbers."""
    rows = [{"attack": "FGSM-k", "eps": 20 / 255, "n": 10, "acc": 0.5, "ci_low": 0.2, "ci_high": 0.8},
            {"attack": "PGD-20", "eps": 0.1, "n": 10, "acc": 0.4, "ci_low": 0.1, "ci_high": 0.7}]
    _, header, lines = reporting.readable(rows)
    assert header == ["attack", "eps", "accuracy % [95%]"]
    assert lines[0].startswith("| FGSM-k | 20/255 |") and lines[1].startswith("| PGD-20 | 0.1 |")
    _, header, _ = reporting.readable([{"FGSM-k @0.0784": "1.4 [0.8, 2.3]", "PGD-20 @0.1": "0.0 [0.0, 0.4]",
                                        "n @home": "x"}])
    assert header == ["FGSM-k @20/255", "PGD-20 @0.1", "n @home"]
