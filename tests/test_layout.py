"""The repository's shape: a package with thin scripts on top (tools/import_graph.py's
rules, on this repository and on one built to break each), short modules and functions,
a package that imports without TensorFlow, and the README's Python example, run as written."""
import ast
import os
import re
import subprocess
import sys

from conftest import ROOT, run_script

sys.path.insert(0, str(ROOT / "tools"))
import import_graph  # noqa: E402

MAX_MODULE_LINES, MAX_FUNCTION_LINES = 450, 60


def test_the_repository_keeps_its_import_rules():
    edges = import_graph.graph()
    assert set(import_graph.SCRIPTS) <= set(edges)
    assert import_graph.broken_rules(edges) == []
    for script in import_graph.SCRIPTS:   # a script is a recipe: it calls the package and nothing else of ours
        assert all(target.startswith("fashion_defenses") for target in edges[script]), script


def test_the_rules_catch_a_script_importing_a_script_a_cycle_and_a_private_name(tmp_path):
    package = tmp_path / "fashion_defenses"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from fashion_defenses.b import _helper\n")
    (package / "b.py").write_text("from fashion_defenses import a\n_helper = 1\n")
    (tmp_path / "model.py").write_text("import fashion_defenses.a\n")
    (tmp_path / "attacks.py").write_text("def main():\n    import model\n")
    broken = import_graph.broken_rules(import_graph.graph(tmp_path))
    assert "attacks imports the script model" in broken
    assert "fashion_defenses.a imports private names of fashion_defenses.b: _helper" in broken
    assert {"fashion_defenses.a is on an import cycle", "fashion_defenses.b is on an import cycle"} <= set(broken)
    proc = run_script("tools/import_graph.py")
    assert proc.returncode == 0 and "no script imports a script" in proc.stdout


def test_modules_and_functions_stay_short():
    files = sorted((ROOT / "fashion_defenses").rglob("*.py")) + [ROOT / f"{s}.py" for s in import_graph.SCRIPTS]
    too_long = []
    for path in files:
        text = path.read_text()
        if text.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{path.name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno >= MAX_FUNCTION_LINES:
                too_long.append(f"{path.name}: {node.name}() {node.end_lineno - node.lineno + 1} lines")
    assert not too_long


def test_importing_the_package_loads_no_tensorflow():
    """What a script needs before its flags are checked, and the package itself, start fast."""
    modules = ("fashion_defenses", "fashion_defenses.cli", "fashion_defenses.settings",
               "fashion_defenses.defenses.certificates", "fashion_defenses.defenses.recipes",
               "fashion_defenses.privacy.report")
    code = f"import sys, {', '.join(modules)}; print('tensorflow' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.stdout.strip() == "False", proc.stderr


def test_the_readme_example_runs_as_written(small_model, tmp_path):
    """The README's Python example, on a model saved where it says, in a fresh process."""
    block = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    assert "from fashion_defenses import evaluate" in block
    small_model.save(tmp_path / "my_cnn.keras")
    proc = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    figure = re.compile(r"(.+) \(linf 0\.1\): ([\d.]+)% \[([\d.]+), ([\d.]+)\] of (\d+)$")
    (aa, aa_acc, aa_low, aa_high, aa_n), (worst, worst_acc, _, _, worst_n) = (
        figure.match(line).groups() for line in lines[-3:-1])
    assert (aa, worst, aa_n, worst_n) == ("AutoAttack", "worst case", "50", "50")   # quick: 50 images
    assert float(aa_low) <= float(aa_acc) <= float(aa_high) and float(worst_acc) <= float(aa_acc)
    broken = re.fullmatch(r"AutoAttack broke (\d+) images; checks pass: (True|False)", lines[-1])
    assert broken and int(broken.group(1)) + round(float(aa_acc) / 100 * 50) <= 50   # broken ones were right before
