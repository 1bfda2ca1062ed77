"""Refresh the generated blocks of README.md from results/: every block between
`<!-- include: PATH -->` and `<!-- end include -->` is replaced by the file at PATH
(a Markdown table written by a script; its '# title' line becomes a bold caption).
No number in the README is typed by hand.

    python tools/update_readme.py [README.md]
"""
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fashion_defenses.reporting import markdown_table

BLOCK = re.compile(r"(<!-- include: (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- end include -->)", re.S)


def render(root, name):
    path = root / name
    if not path.exists():
        return f"*(not generated yet: run the command above to write `{name}`)*\n"
    return markdown_table(path)


def update(readme):
    root = readme.parent
    text = readme.read_text()
    new = BLOCK.sub(lambda m: m.group(1) + render(root, m.group("path")) + m.group(4), text)
    if new != text:
        readme.write_text(new)
    return new != text


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "README.md")
    if not target.is_file():
        sys.exit(f"error: no such file {target}")
    print(f"{target}: {'updated' if update(target) else 'already up to date'}")
