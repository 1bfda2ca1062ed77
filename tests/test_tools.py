"""tools/: the README refresher fills only its marked blocks; the timer of make targets
passes the exit code through and records every run."""
import csv
import sys

from conftest import HANG_S, ROOT, run_script

sys.path.insert(0, str(ROOT / "tools"))
import publish  # noqa: E402
import update_readme  # noqa: E402


def test_update_readme_replaces_only_the_marked_block(tmp_path):
    (tmp_path / "t.md").write_text("# A title\n\n| a |\n|---|\n| 1 |\n")
    readme = tmp_path / "README.md"
    readme.write_text("before\n<!-- include: t.md -->\nold\n<!-- end include -->\nafter\n"
                      "<!-- include: missing.md -->\n<!-- end include -->\n")
    assert update_readme.update(readme)
    text = readme.read_text()
    assert "**A title**\n\n| a |\n|---|\n| 1 |\n<!-- end include -->\nafter" in text
    assert "old" not in text and text.startswith("before\n")
    assert "not generated yet" in text
    assert not update_readme.update(readme)  # idempotent


def test_update_readme_refuses_a_missing_file_in_one_line(tmp_path):
    proc = run_script("tools/update_readme.py", tmp_path / "NOPE.md")
    assert proc.returncode == 1 and proc.stderr.strip() == f"error: no such file {tmp_path / 'NOPE.md'}"


def test_timed_records_each_run_and_passes_the_exit_code_through(tmp_path):
    ok = run_script("tools/timed.py", "--results-dir", tmp_path, sys.executable, "-c",
                    "import time; time.sleep(0.3); print('hi')")
    assert ok.returncode == 0 and "hi" in ok.stdout
    failed = run_script("tools/timed.py", "--results-dir", tmp_path, sys.executable, "-c",
                        "import sys; sys.exit(3)")
    assert failed.returncode == 3
    rows = list(csv.DictReader((tmp_path / "run_times.csv").open()))
    assert [r["exit"] for r in rows] == ["0", "3"]
    assert rows[0]["command"].startswith("python -c") and float(rows[0]["wall_s"]) >= 0.3   # it slept that long
    summary = (tmp_path / "run_times.md").read_text()
    assert summary.count("`python -c") == 1 and "sys.exit" not in summary   # a failed run times nothing
    assert "per epoch" not in summary   # benchmarks/machine_speed.py has not measured the machine


def test_timed_records_the_peak_memory_of_the_command(tmp_path):
    """A command that holds 300 MiB records a peak of at least that; an idle one far less."""
    for code in ("b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096])", "pass"):
        assert run_script("tools/timed.py", "--results-dir", tmp_path, sys.executable, "-c", code).returncode == 0
    big, idle = [float(r["peak_rss_mib"]) for r in csv.DictReader((tmp_path / "run_times.csv").open())]
    assert big >= 300 > 100 > idle


def test_timed_passes_sigterm_on_and_records_the_interrupted_run(tmp_path):
    """SIGTERM sent to timed.py stops the command it runs; the run is recorded with the
    command's exit code and is no target's time."""
    import signal
    import subprocess
    import time
    started = tmp_path / "started"
    sleeper = subprocess.Popen([sys.executable, str(ROOT / "tools" / "timed.py"), "--results-dir", str(tmp_path),
                                sys.executable, "-c",
                                f"import pathlib, time; pathlib.Path({str(started)!r}).touch(); time.sleep(600)"],
                               cwd=ROOT)
    deadline = time.time() + HANG_S
    while not started.exists() and time.time() < deadline:
        time.sleep(0.1)
    sleeper.send_signal(signal.SIGTERM)
    assert sleeper.wait(timeout=HANG_S) == 128 + signal.SIGTERM
    row = next(csv.DictReader((tmp_path / "run_times.csv").open()))
    assert row["exit"] == str(128 + signal.SIGTERM) and float(row["wall_s"]) < 600
    assert not (tmp_path / "run_times.md").exists()


def test_timed_summary_of_nothing_says_so(tmp_path):
    proc = run_script("tools/timed.py", "--results-dir", tmp_path, "--summary")
    assert proc.returncode == 1 and "nothing to summarise" in proc.stderr


def test_compare_runs_matches_measurements_and_certification_logs(tmp_path):
    """Rows with the same settings are paired whatever their timing columns; a value
    outside the earlier interval is counted as such; a measurement one run alone made is
    counted per table; certification logs image by image."""
    header = "protocol,attack,eps,n,acc,ci_low,ci_high,seconds_per_epoch\n"
    for name, rows in (("old", "standard,PGD-20,0.1,1000,0.70,0.67,0.73,9.1\nstandard,FGSM,0.1,1000,0.5,0.47,0.53,9.1\n"
                                "standard,gone,0.1,1000,0.5,0.47,0.53,9.1\n"),
                       ("new", "standard,PGD-20,0.1,1000,0.71,0.68,0.74,31.0\nstandard,FGSM,0.1,1000,0.6,0.57,0.63,31\n"
                                "standard,added,0.1,1000,0.5,0.47,0.53,9.1\n")):
        (tmp_path / name / "certify").mkdir(parents=True)
        (tmp_path / name / "attacks_standard.csv").write_text(header + rows)
        tsv = "idx\tlabel\tpredict\tradius\tcorrect\ttime\n" + "".join(
            f"{i}\t1\t{p}\t{r}\t1\t2.0\n" for i, p, r in ((4, 1, 0.5), (11, 2 if name == "new" else 1, 0.7),
                                                          (12, 1, 0.9 if name == "old" else 0.8)))
        (tmp_path / name / "certify" / "m_sigma0.25_n100.tsv").write_text(tsv)
    (tmp_path / "new" / "evaluation_standard.csv").write_text(header + "standard,FAB-T,0.1,1000,0.7,0.67,0.73,9\n")
    proc = run_script("tools/compare_runs.py", tmp_path / "old", tmp_path / "new")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader((tmp_path / "new" / "reproducibility.csv").open()))
    assert [(r["measurement"], r["within_earlier_interval"]) for r in rows] == [("PGD-20, 0.1", "True"),
                                                                               ("FGSM, 0.1", "False")]
    text = (tmp_path / "new" / "reproducibility.md").read_text()
    assert "1 of 2 lie in the earlier exact 95% interval" in text
    assert "2 of 3 images get the same prediction (66.7%); certified radii moved by 0.05 (median), 0.1 at most" in text
    assert "- attacks_standard: 2 in both (1 within), 1 only now, 1 only earlier" in text
    assert "- evaluation_standard: 0 in both (0 within), 1 only now, 0 only earlier" in text
    nothing = run_script("tools/compare_runs.py", tmp_path / "old", tmp_path / "old" / "certify")
    assert nothing.returncode == 1 and "share no measurement" in nothing.stderr


def test_compare_runs_names_a_figure_or_radius_that_is_no_number_in_one_line(tmp_path):
    for name in ("old", "new"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "attacks_standard.csv").write_text("attack,acc,ci_low,ci_high\nPGD-20,x,0.6,0.7\n")
    proc = run_script("tools/compare_runs.py", tmp_path / "old", tmp_path / "new")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: attacks_standard.csv: a figure that is no number")
    for name, radius in (("old", "0.5"), ("new", "x")):
        (tmp_path / name / "attacks_standard.csv").unlink()
        (tmp_path / name / "certify").mkdir()
        (tmp_path / name / "certify" / "m_sigma0.25_n100.tsv").write_text(
            f"idx\tlabel\tpredict\tradius\tcorrect\ttime\n4\t1\t1\t{radius}\t1\t2.0\n")
    proc = run_script("tools/compare_runs.py", tmp_path / "old", tmp_path / "new")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: certify/m_sigma0.25_n100.tsv: a radius that is no number")
    (tmp_path / "new" / "certify" / "m_sigma0.25_n100.tsv").write_text("idx\tlabel\tpredict\n4\t1\t1\n")
    proc = run_script("tools/compare_runs.py", tmp_path / "old", tmp_path / "new")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: certify/m_sigma0.25_n100.tsv: a log without the columns idx, predict, radius")
    (tmp_path / "new" / "certify" / "m_sigma0.25_n100.tsv").write_text("idx\tlabel\tpredict\tradius\n4\t1\t1\n")
    proc = run_script("tools/compare_runs.py", tmp_path / "old", tmp_path / "new")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: certify/m_sigma0.25_n100.tsv: a radius that is no number")
    for run in ("old", "new"):
        (tmp_path / run / "certify" / "m_sigma0.25_n100.tsv").write_text("idx\tlabel\tpredict\tradius\nx\t1\t1\t0.5\n")
    proc = run_script("tools/compare_runs.py", tmp_path / "old", tmp_path / "new")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: certify/m_sigma0.25_n100.tsv: an image index that is no integer")


def test_a_make_target_is_named_as_typed_and_timed_by_its_latest_successful_run(tmp_path):
    """`make test` with a variable set is still `make test`: its latest successful run is
    its time, and a failed run after it changes nothing; another target keeps its own."""
    import timed
    row = {"exit": "0", "commit": "abc", "cpus": "2", "gpu": "none", "host": "h", "peak_rss_mib": "",
           "machine_s_per_epoch": "", "finished_utc": "2026-11-26 12:00"}
    rows = [{**row, "command": "make --no-print-directory quick-scripts", "wall_s": "540"},
            {**row, "command": "make --no-print-directory test", "wall_s": "456"},
            {**row, "command": "make --no-print-directory test PYTEST_FLAGS=--junitxml=x.xml", "wall_s": "1116"},
            {**row, "command": "make --no-print-directory test", "wall_s": "60", "exit": "2"}]
    assert timed.write_markdown(rows, tmp_path / "t.md")
    text = (tmp_path / "t.md").read_text()
    assert "`make quick-scripts` took 9.0 minutes on 2 CPUs" in text
    assert text.count("`make test`") == 1 and "`make test` took 18.6 minutes" in text and "PYTEST" not in text
    assert not timed.write_markdown(rows[3:], tmp_path / "t.md")   # no successful run: nothing to say


def test_a_timed_make_target_names_the_machine_speed_it_ran_at(tmp_path):
    """make test-record: the speed benchmarks/machine_speed.py wrote before the target ran
    is recorded with it; a later measurement does not rewrite what an old row says."""
    (tmp_path / "machine_speed.csv").write_text("seconds_per_epoch,images\n10.8,55000\n")
    (tmp_path / "Makefile").write_text("target:\n\t@true\n")
    assert run_script("tools/timed.py", "--results-dir", tmp_path, "make", "-C", tmp_path, "--no-print-directory",
                      "target").returncode == 0
    row = next(csv.DictReader((tmp_path / "run_times.csv").open()))
    assert row["machine_s_per_epoch"] == "10.8"
    (tmp_path / "machine_speed.csv").write_text("seconds_per_epoch,images\n35.0,55000\n")
    assert run_script("tools/timed.py", "--results-dir", tmp_path, "--summary").returncode == 0
    text = (tmp_path / "run_times.md").read_text()
    assert "`make target` took" in text
    assert "trained the standard base CNN at 10.8 s per epoch" in text and "35.0" not in text


def test_timed_records_nothing_under_make_dry_run(tmp_path, monkeypatch):
    monkeypatch.setenv("MAKEFLAGS", "n --no-print-directory")
    proc = run_script("tools/timed.py", "--results-dir", tmp_path, sys.executable, "-c", "print('hi')")
    assert proc.returncode == 0 and "hi" in proc.stdout and not (tmp_path / "run_times.csv").exists()
    for flags in ("s", " --no-print-directory", " -j2 --jobserver-auth=3,4"):   # not a dry run: timed
        monkeypatch.setenv("MAKEFLAGS", flags)
        run_script("tools/timed.py", "--results-dir", tmp_path, sys.executable, "-c", "pass")
    assert len(list(csv.DictReader((tmp_path / "run_times.csv").open()))) == 3


def test_the_report_refuses_a_results_folder_that_does_not_exist(tmp_path):
    proc = run_script("tools/redraw_results.py", tmp_path / "typo")
    assert proc.returncode == 1 and "error: no results folder" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "typo").exists()


def test_the_reports_help_is_help_not_a_folder():
    proc = run_script("tools/redraw_results.py", "--help")
    assert proc.returncode == 0 and "usage:" in proc.stdout and "results_dir" in proc.stdout
    assert "no results folder" not in proc.stderr


def test_the_report_names_a_malformed_table_in_one_line(tmp_path):
    (tmp_path / "certified_robustness_empirical.csv").write_text("model,radius\nsmoothed sigma 0.25,0.5\n")
    log = tmp_path / "certify" / "standard_cnn_noise0.25_sigma0.25_n1000.tsv"
    log.parent.mkdir()
    log.write_text("idx\tlabel\tpredict\tradius\tcorrect\ttime\tnA\tn\n0\t1\t1\t0.3\t1\t0.1\t990\t1000\n")
    proc = run_script("tools/redraw_results.py", tmp_path)
    assert proc.returncode == 1 and "is not as a run writes it (KeyError: 'ci_high')" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_kill_check_finds_a_changed_figure_and_ignores_timings(tmp_path):
    """quick_chain's comparison: a table that differs only in its timing columns, and a
    membership output file only in the fingerprint of the model that made it, are the
    same; a measured cell that moved, a score or output that changed, a file one run
    lacks: each is reported."""
    import numpy as np
    import quick_chain
    first, second = tmp_path / "a", tmp_path / "b"
    for folder, (acc, seconds, score) in ((first, ("0.5", "12.0", 0.1)), (second, ("0.5", "99.0", 0.1))):
        (folder / "mia").mkdir(parents=True)
        (folder / "t.csv").write_text(f"attack,acc,seconds_per_epoch,finished_at\nPGD,{acc},{seconds},{seconds}\n")
        np.savez(folder / "mia" / "m_loss.npz", score=np.array([score]), is_member=np.array([True]))
        np.savez(folder / "mia" / "outputs.npz", model=np.array(str(folder)), max_prob=np.array([0.9]))
    assert quick_chain.differences(first, second) == []
    (second / "t.csv").write_text("attack,acc,seconds_per_epoch,finished_at\nPGD,0.6,99.0,1\n")
    np.savez(second / "mia" / "m_loss.npz", score=np.array([0.2]), is_member=np.array([True]))
    np.savez(second / "mia" / "outputs.npz", model=np.array("b"), max_prob=np.array([0.8]))
    (first / "only_here.csv").write_text("a\n1\n")
    assert quick_chain.differences(first, second) == [("mia/m_loss.npz", "arrays score"),
                                                      ("mia/outputs.npz", "arrays max_prob"),
                                                      ("only_here.csv", "missing"), ("t.csv", "1 cells")]
    assert len(quick_chain.CHAIN) == 13 and quick_chain.CHAIN[-1][0] == "evaluation.py"


def test_provenance_names_the_commits_and_every_job_not_current(tmp_path):
    rows = [{"job": "train@a", "state": "current", "commit": "aaaaaaa", "machine_s_per_epoch": "15.5",
             "finished": "2026-12-07 01:00:00 UTC", "epochs": "300", "estimate_epochs": ""},
            {"job": "train@b", "state": "stale", "commit": "bbbbbbb", "machine_s_per_epoch": "41.7",
             "finished": "2026-12-07 02:00:00 UTC", "epochs": "60", "estimate_epochs": ""},
            {"job": "evaluate@a", "state": "never run", "commit": "", "machine_s_per_epoch": "", "finished": "",
             "epochs": "", "estimate_epochs": "40"},
            {"job": "publish", "state": "never run", "commit": "", "machine_s_per_epoch": "", "finished": "",
             "epochs": "", "estimate_epochs": "none yet"}]
    with open(tmp_path / "jobs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    text = publish.provenance(tmp_path / "jobs.csv")
    assert "the 2 jobs" in text and "from aaaaaaa to bbbbbbb" in text and "15.5 to 41.7 s/epoch" in text
    assert "1 was stale (train (1))" in text and "2 were never run (evaluate (1), publish)" in text
    assert "every job was current" not in text
    # 360 epochs: 1.55 h at 15.5 s/epoch, 4.17 h at 41.7
    assert "360 epochs of the standard CNN, on two cores 1.6 h at 15.5 s/epoch or 4.2 h at 41.7 s/epoch" in text
    assert "the 2 jobs not run are estimated at 40 epochs more (1 without an estimate)" in text
    for row in rows:
        row.update(state="current", commit=row["commit"] or "ccccccc", machine_s_per_epoch="15.5",
                   finished=row["finished"] or "2026-12-07 03:00:00 UTC", epochs=row["epochs"] or "30")
    with open(tmp_path / "jobs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    text = publish.provenance(tmp_path / "jobs.csv")
    assert "every job was current" in text and "the 4 jobs" in text and "stale" not in text
    assert "420 epochs of the standard CNN, on two cores 1.8 h at 15.5 s/epoch." in text and "not run" not in text


def test_the_slowest_tests_come_from_the_junit_report_slowest_first(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import slowest_tests
    (tmp_path / "suite.xml").write_text(
        '<?xml version="1.0"?><testsuites><testsuite name="pytest">'
        '<testcase classname="tests.test_a" name="test_x" time="12.5"/>'
        '<testcase classname="tests.test_b" name="test_y[2]" time="100.25"/>'
        '<testcase classname="tests.test_c" name="test_z" time="0.1"/></testsuite></testsuites>')
    tests, total, count = slowest_tests.slowest(tmp_path / "suite.xml", 2)
    assert tests == [("tests.test_b::test_y[2]", 100.25), ("tests.test_a::test_x", 12.5)]
    assert (total, count) == (112.85, 3)
    (tmp_path / "cut.xml").write_text('<?xml version="1.0"?><testsuites><testsuite')    # a run killed mid-write
    proc = run_script("benchmarks/slowest_tests.py", tmp_path / "cut.xml")
    assert proc.returncode == 1 and "is no JUnit XML report" in proc.stderr and "Traceback" not in proc.stderr

