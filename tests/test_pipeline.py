"""The run as jobs (dvc.yaml, tools/jobs.py) and the model zoo: every job depends on
every file its command can execute; a job's state comes from committed files alone;
the runner runs stale jobs in order and commits each; train.py publishes a model
weights-only and load_defense hands it back as the evaluation uses it."""
import io
import json
import shutil
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest
import yaml
from conftest import ROOT, assert_one_line_error, run_script

sys.path.insert(0, str(ROOT / "tools"))
import import_graph  # noqa: E402
import jobs  # noqa: E402
from fashion_defenses import reporting  # noqa: E402


def test_every_job_depends_on_every_file_its_command_can_execute_and_no_other_code():
    assert jobs.undeclared_dependencies() == {}
    assert jobs.superfluous_dependencies() == {}


def test_a_dependency_left_out_of_dvc_yaml_is_named(tmp_path):
    """The check above can fail: drop one module from the trainings' deps in a copy."""
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    pipeline = (ROOT / "dvc.yaml").read_text()
    assert "        - fashion_defenses/training.py\n" in pipeline
    (tmp_path / "dvc.yaml").write_text(pipeline.replace("        - fashion_defenses/training.py\n", "", 1))
    missing = jobs.undeclared_dependencies(tmp_path, ROOT)
    assert missing and all(files == ["fashion_defenses/training.py"] for files in missing.values())
    assert "train-standard@standard_cnn" in missing and "train-paper-at-b16" not in missing   # its own list


def test_code_a_job_never_executes_is_named_among_its_dependencies(tmp_path):
    """The evaluation jobs must not depend on the tables' code: add the report module to
    their deps in a copy, and the check names it for each of them and for no other job."""
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    pipeline = (ROOT / "dvc.yaml").read_text()
    anchor = "        - evaluate_defense.py\n"   # first in the evaluate stage's list
    extra_line = "        - fashion_defenses/evaluation/report.py\n"
    (tmp_path / "dvc.yaml").write_text(pipeline.replace(anchor, anchor + extra_line, 1))
    extra = jobs.superfluous_dependencies(tmp_path, ROOT)
    assert extra and set(extra) == {name for name in jobs.stages(ROOT) if name.startswith("evaluate@")}
    assert all(files == ["fashion_defenses/evaluation/report.py"] for files in extra.values())


def test_source_files_follow_imports_at_any_depth_but_not_a_packages_lazy_names(tmp_path):
    package = tmp_path / "fashion_defenses"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("def __getattr__(name):\n    from fashion_defenses import lazy\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "deep.py").write_text("import fashion_defenses.leaf\n")
    (package / "leaf.py").write_text("")
    (package / "lazy.py").write_text("")
    (package / "unused.py").write_text("")
    (tmp_path / "script.py").write_text("def main():\n    from fashion_defenses.sub import deep\n")
    assert import_graph.source_files("script.py", tmp_path) == [
        "fashion_defenses/__init__.py", "fashion_defenses/leaf.py", "fashion_defenses/sub/__init__.py",
        "fashion_defenses/sub/deep.py", "script.py"]


def test_a_job_reading_a_folder_waits_for_every_job_writing_into_it():
    """The attacks read results/mia/outputs/<protocol>, where each model's job writes its
    own subfolder: they wait for every one of those jobs, and so does what reads them."""
    job = jobs.Job
    all_stages = {"own": job("", ["zoo/m.keras"], ["results/mia/outputs/standard/m/model0"], None),
                  "attacks": job("", ["results/mia/outputs/standard"], ["results/mi.csv"], None),
                  "report": job("", ["results/mi.csv"], ["results/summary.md"], None),
                  "other": job("", ["results/mia/outputs/standard_x"], ["results/x.csv"], None)}
    state = {"own": "stale", "attacks": "current", "report": "current", "other": "current"}
    assert not jobs.ready("attacks", all_stages, state) and jobs.ready("other", all_stages, state)
    assert jobs.awaiting(all_stages, state) == {"own", "attacks", "report"}
    state["own"] = "current"
    assert jobs.ready("attacks", all_stages, state) and jobs.awaiting(all_stages, state) == set()


def test_every_file_a_job_reads_from_results_or_the_zoo_is_another_jobs_output():
    """A dependency no job writes (a typo, a renamed file) would never make its job stale."""
    all_stages = jobs.stages()
    outs = [out for job in all_stages.values() for out in job.outs]
    unmade = {name: [d for d in job.deps if d.startswith(("results/", "zoo/")) and not jobs.reads([d], outs)]
              for name, job in all_stages.items()}
    assert {name: deps for name, deps in unmade.items() if deps} == {}


def test_the_publish_job_reads_every_table_the_other_jobs_write():
    """results/README.md and the findings are made from the tables: a job whose table
    publish does not read would leave them behind it."""
    all_stages = jobs.stages()
    tables = {out for name, job in all_stages.items() if name != "publish" for out in job.outs
              if out.count("/") == 1 and out.startswith("results/") and out.endswith((".md", ".csv"))}
    assert tables and tables <= set(all_stages["publish"].deps)
    assert not any(jobs.reads(all_stages["publish"].outs, job.outs) for name, job in all_stages.items()
                   if name != "publish")


def git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def toy_pipeline(tmp_path):
    """A git repository with a two-job pipeline: `first` doubles a number from
    step.py's input, `second` reads first's output."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "test@example.org")
    git(repo, "config", "user.name", "test")
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=repo, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], cwd=repo, check=True)
    (repo / "step.py").write_text("import sys\nopen(sys.argv[2], 'w').write(str(2 * int(open(sys.argv[1]).read())))\n")
    (repo / "input.txt").write_text("3")
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "second": {"cmd": "python3 step.py first.txt second.txt", "deps": ["step.py", "first.txt"],
                   "outs": [{"second.txt": {"cache": False}}]},
        "first": {"cmd": "python3 step.py input.txt first.txt", "deps": ["step.py", "input.txt"],
                  "outs": [{"first.txt": {"cache": False}}]}}}))
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "toy pipeline")
    return repo


def test_the_runner_runs_jobs_in_order_commits_each_and_a_clone_reads_them_as_current(toy_pipeline, tmp_path):
    repo = toy_pipeline
    assert jobs.states(repo) == {"second": "never run", "first": "never run"}
    all_stages, state = jobs.stages(repo), jobs.states(repo)
    assert jobs.next_job(repo, all_stages, state) == "first"     # second waits for first's output
    jobs.run(None, commit=True, root=repo, speed=10.0)
    assert (repo / "second.txt").read_text() == "12"
    log = git(repo, "log", "--format=%s").splitlines()
    assert log[0].startswith("job second: ") and log[1].startswith("job first: ") and "10 s/epoch" in log[0]
    assert git(repo, "status", "--porcelain") == ""                   # nothing left uncommitted
    assert "2 jobs: 2 current, 0 stale, 0 never run" in (repo / "results/jobs.md").read_text()
    record = json.loads((repo / "results/jobs/first.json").read_text())
    assert record["commit"] == git(repo, "rev-parse", "HEAD~2").strip() and record["machine_s_per_epoch"] == 10.0
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    assert jobs.states(clone) == {"second": "current", "first": "current"}
    (clone / "input.txt").write_text("4")                            # first's input changes: first alone is stale
    assert jobs.states(clone) == {"second": "current", "first": "stale"}
    assert jobs.next_job(clone, jobs.stages(clone), jobs.states(clone)) == "first"
    assert jobs.awaiting(jobs.stages(clone), jobs.states(clone)) == {"first", "second"}   # second reads first's
    shutil.rmtree(clone)


def test_the_job_table_shows_a_commit_that_reads_like_a_number_as_written(toy_pipeline):
    """A short commit hash such as 80235e7 is text in the job table, not 802350000000,
    and a redraw of results/ leaves the table as written."""
    repo = toy_pipeline
    jobs.run(None, commit=True, root=repo, speed=10.0)
    path = repo / "results/jobs/first.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "commit": "80235e7" + "0" * 33}))
    jobs.table(repo)
    table = (repo / "results/jobs.md").read_text()
    assert "| 80235e7 |" in table and "802350000000" not in table
    assert reporting.rerender_markdown(repo / "results") == [] and (repo / "results/jobs.md").read_text() == table


def test_jobs_left_alone_by_pattern_are_not_run_and_nor_is_what_waits_for_them(toy_pipeline, capsys):
    """make jobs ARGS="--leave 'fir*'" (a job a change is about to invalidate) runs
    neither it nor what waits for it; --only 'fir*' runs it alone."""
    repo = toy_pipeline
    assert jobs.run(None, commit=True, root=repo, speed=10.0, leave=["fir*"]) is True
    assert jobs.states(repo) == {"second": "never run", "first": "never run"} and not (repo / "first.txt").exists()
    assert "left alone (--leave, --only): 1" in capsys.readouterr().out
    jobs.run(None, commit=True, root=repo, speed=10.0, only=["fir*"])
    assert jobs.states(repo) == {"second": "never run", "first": "current"}


def test_a_failed_job_is_skipped_until_its_inputs_change_and_the_others_go_on(toy_pipeline):
    repo = toy_pipeline
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    pipeline["stages"] = {"broken": {"cmd": "python3 step.py later.txt broken.txt", "deps": ["step.py", "later.txt"],
                                     "outs": [{"broken.txt": {"cache": False}}]}, **pipeline["stages"]}
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    git(repo, "commit", "-q", "-am", "a job whose input is not there yet")
    assert jobs.run(None, commit=True, root=repo, speed=10.0) is False        # broken fails, first and second run
    assert (repo / "second.txt").read_text() == "12" and "broken" in json.loads((repo / jobs.FAILED).read_text())
    commits = git(repo, "rev-list", "--count", "HEAD")
    assert jobs.run(None, commit=True, root=repo, speed=10.0) is True          # not tried again: nothing to run
    assert git(repo, "rev-list", "--count", "HEAD") == commits
    (repo / "later.txt").write_text("5")                                        # its input arrives
    git(repo, "add", "later.txt")
    git(repo, "commit", "-q", "-m", "the input")
    assert jobs.run(None, commit=True, root=repo, speed=10.0) is True
    assert (repo / "broken.txt").read_text() == "10" and jobs.states(repo)["broken"] == "current"


def test_train_publishes_weights_only_and_load_defense_returns_each_defense_as_evaluated(tmp_path, quick_run,
                                                                                         quick_data):
    """train.py --quick into a zoo (the undefended CNN trained here, the other models
    found in the quick run's cache); every quick label loads from it: the filter in
    front, the smoothed classifier around the noise-trained CNN; evaluate() of the
    published PGD AT gives the quick run's evaluation of it, image by image."""
    from fashion_defenses import evaluate, load_defense
    from fashion_defenses.defenses import filters, smoothing
    from fashion_defenses.evaluation.result import load_per_image
    from fashion_defenses.framework import keras
    zoo, models = tmp_path / "zoo", tmp_path / "models"
    models.mkdir()
    for name in ("standard_cnn_dual", "standard_cnn_at-pgd_eps0.1_ep1", "standard_cnn_noise0.25"):
        for suffix in (".keras", ".json"):
            shutil.copy(quick_run.models / (name + suffix), models)
    labels = ("undefended CNN", "dual filter", "PGD AT", "smoothing sigma 0.25")
    for label in labels:
        proc = run_script("train.py", "--quick", label, "--models-dir", models, "--zoo", zoo / "standard")
        assert proc.returncode == 0, proc.stderr
    published = sorted(p.name for p in (zoo / "standard").glob("*.keras"))
    assert published == ["standard_cnn.keras", "standard_cnn_at-pgd_eps0.1_ep1.keras", "standard_cnn_dual.keras",
                         "standard_cnn_noise0.25.keras"]
    for path in (zoo / "standard").glob("*.keras"):      # weights only: the cache's file has optimizer state too
        assert "optimizer" not in saved_weight_groups(path)
    assert "optimizer" in saved_weight_groups(models / "standard_cnn.keras")
    x = quick_data.x_test[:20]
    cnn = load_defense("undefended CNN", zoo=zoo, quick=True)
    trained = keras.models.load_model(models / "standard_cnn.keras")     # trained by train.py above
    np.testing.assert_array_equal(cnn.predict(x, verbose=0), trained.predict(x, verbose=0))
    dual = load_defense("dual filter", zoo=zoo, quick=True)
    assert [layer.name for layer in filters.filter_layers(dual)] == ["dual_median"]
    smooth = load_defense("smoothing sigma 0.25", zoo=zoo, quick=True)
    assert isinstance(smooth, smoothing.Smooth) and smooth.sigma == 0.25
    # transfer examples from the quick run's undefended CNN, as its evaluation.py had them
    result = evaluate(load_defense("PGD AT", zoo=zoo, quick=True), quick=True, models_dir=quick_run.models)
    assert result.autoattack.n == 50
    images, robust = load_per_image(quick_run.results / "per_image" / "evaluation_standard" /
                                    "standard_cnn_at-pgd_eps0.1_ep1.npz")
    assert list(result.images) == list(images) and result.robust.keys() == robust.keys()
    for key in robust:
        np.testing.assert_array_equal(result.robust[key], robust[key], err_msg=str(key))
    # the result's per-image view: what AutoAttack broke is what was right before it and is not after
    benign, after = result.robust[("benign", 0.0)], result.robust[("AutoAttack", 0.1)]
    assert list(result.broken_by("AutoAttack", 0.1)) == list(result.images[benign & ~after])
    assert len(result.broken_by("AutoAttack", 0.1)) == benign.sum() - round(result.autoattack.accuracy * 50)
    assert result.passed == all(check.passed for check in result.checks) and result.checks
    result.save(tmp_path / "pgd.npz")
    images, robust = load_per_image(tmp_path / "pgd.npz")
    assert list(images) == list(result.images) and robust.keys() == result.robust.keys()
    assert all((robust[k] == result.robust[k]).all() for k in robust)
    # a filter put in front by name, and the smoothed classifier load_defense gives: judged as the catalogue's
    filtered = evaluate(cnn, filter="dual", quick=True)
    assert filtered.attacked_through != result.attacked_through and "BPDA" in filtered.attacked_through
    smoothed = evaluate(smooth, quick=True)
    assert "PREDICT" in smoothed.judged_by and smoothed.autoattack.attack.startswith("AutoAttack (rand version)")


def saved_weight_groups(path):
    """The top-level groups of the weights inside a .keras file."""
    with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5"))) as weights:
        return list(weights)


def test_an_unknown_or_unpublished_defense_is_one_clear_line(tmp_path):
    from fashion_defenses import load_defense
    from fashion_defenses.errors import UserError
    with pytest.raises(UserError, match="no defense 'PGD' in the standard protocol; its defenses: undefended CNN"):
        load_defense("PGD", zoo=tmp_path)
    with pytest.raises(UserError, match="is not published yet"):
        load_defense("PGD AT", zoo=tmp_path)
    proc = run_script("train.py", "no such model", "--models-dir", tmp_path)
    assert_one_line_error(proc.returncode, proc.stderr)
    assert "train.py --list" in proc.stderr
