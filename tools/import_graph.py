"""The repository's imports, drawn from its own source with ast: the scripts on top,
then the package's modules floor by floor (a module stands above everything it
imports), and the rules the layout keeps checked:

- no script imports another script, and the package imports no script;
- no cycle among the package's modules;
- no module imports another module's private (_underscored) names.

    python tools/import_graph.py            # the drawing, then the rules; exit 1 if one is broken
    python tools/import_graph.py --write docs/imports.md
"""
import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "fashion_defenses"
SCRIPTS = ("model", "attacks", "input_preprocessing", "runtime_adversarial_training", "certified_robustness",
           "membership_inference", "membership_outputs", "evaluation", "evaluate_defense", "certify", "train")


def module_name(path, root=ROOT):
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path, known, lazy=True):
    """(imported module, names taken from it) for every import of a known module, at any
    depth of the file (a script imports the package inside main). lazy=False leaves out
    those of a module's __getattr__, which run only when someone asks the module for a
    name it does not have (the package's `evaluate` for a user)."""
    found = []
    tree = ast.parse(path.read_text())
    if not lazy:
        tree.body = [node for node in tree.body if not (isinstance(node, ast.FunctionDef)
                                                         and node.name == "__getattr__")]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, ()) for a in node.names if a.name in known]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in known:
                for a in node.names:   # `from package import module` imports the module
                    sub = f"{node.module}.{a.name}"
                    found.append((sub, ()) if sub in known else (node.module, (a.name,)))
    return found


def graph(root=ROOT):
    """{module: {imported module: names}} over the scripts and the package."""
    paths = {module_name(p, root): p for p in sorted((root / PACKAGE).rglob("*.py"))}
    paths.update({s: root / f"{s}.py" for s in SCRIPTS if (root / f"{s}.py").exists()})
    edges = {}
    for name, path in paths.items():
        edges[name] = {}
        for target, names in imports_of(path, set(paths)):
            if target != name:
                edges[name].setdefault(target, set()).update(names)
    for name in edges:   # importing a.b.c runs a/__init__ and a/b/__init__ too: not an edge worth drawing
        for parent in [t for t in edges[name] if any(o.startswith(t + ".") for o in edges[name])]:
            if not edges[name][parent]:
                del edges[name][parent]
    return edges


def source_files(script, root=ROOT):
    """Every project file that running `python <script>` (a path from root, e.g.
    train.py or tools/redraw_results.py) can execute: the script, the package modules
    and the script's sibling modules it imports at any depth, and the __init__.py of
    each package on the way (Python runs those too, all but their __getattr__: no
    module of ours asks a package for a name it imports lazily). Sorted paths from root."""
    script = Path(script)
    paths = {module_name(p, root): p for p in sorted((root / PACKAGE).rglob("*.py"))}
    paths.update({p.stem: p for p in sorted((root / script.parent).glob("*.py"))} if script.parent != Path() else {})
    paths[str(script)] = root / script
    seen, todo = set(), [str(script)]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in paths]
        todo += [target for target, _ in imports_of(paths[name], set(paths), lazy=False)]
    return sorted(str(paths[name].relative_to(root)) for name in seen)


def floors(edges):
    """Each module's floor: 0 for one that imports nothing of ours, else one above the
    highest it imports. None for a module on a cycle."""
    floor, visiting = {}, set()

    def visit(name):
        if name in floor:
            return floor[name]
        if name in visiting:
            return None
        visiting.add(name)
        below = [visit(t) for t in edges[name]]
        visiting.discard(name)
        floor[name] = None if None in below else 1 + max(below, default=-1)
        return floor[name]
    for name in edges:
        visit(name)
    return floor


def broken_rules(edges):
    """Every broken rule, as a line."""
    lines = []
    for name, targets in edges.items():
        for target, names in targets.items():
            if target in SCRIPTS:
                lines.append(f"{name} imports the script {target}")
            private = sorted(n for n in names if n.startswith("_"))
            if private:
                lines.append(f"{name} imports private names of {target}: {', '.join(private)}")
    lines += [f"{name} is on an import cycle" for name, f in floors(edges).items() if f is None]
    return lines


def drawing(edges):
    """The floors from the top: the scripts, then the package, each module with what it imports."""
    floor = floors(edges)
    short = lambda name: name.removeprefix(PACKAGE + ".")  # noqa: E731
    lines = ["scripts (python X.py), each importing the package only:", ""]
    for script in (s for s in SCRIPTS if s in edges):
        lines.append(f"    {script}.py -> " + ", ".join(sorted(short(t) for t in edges[script])))
    package = [n for n in edges if n not in SCRIPTS and (edges[n] or any(e.get(n) for e in edges.values()))]
    for level in sorted({floor[n] for n in package if floor[n] is not None}, reverse=True):
        lines += ["", f"floor {level}:"]
        for name in sorted(n for n in package if floor[n] == level):
            below = sorted(short(t) for t in edges[name])
            lines.append(f"    {short(name)}" + (" -> " + ", ".join(below) if below else ""))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--write", type=Path, help="also write the drawing into this Markdown file")
    args = parser.parse_args()
    edges = graph()
    text = drawing(edges)
    print(text)
    if args.write:
        args.write.write_text("# The imports of the repository\n\nGenerated by `python tools/import_graph.py --write "
                              f"{args.write}` from the source; a module stands one floor above the highest it "
                              f"imports.\n\n```\n{text}\n```\n")
    broken = broken_rules(edges)
    print("\n" + ("\n".join(broken) if broken else "no script imports a script, no cycle, no private name imported"))
    sys.exit(1 if broken else 0)


if __name__ == "__main__":
    main()
