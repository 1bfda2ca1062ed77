"""Accuracy with exact intervals, number formats, atomic writing of tables and
figures. No TensorFlow here, so tools/ can use it."""
import csv
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fashion_defenses.data import STUDY_EPS


def accuracy_ci(correct, confidence=0.95):
    """Accuracy of a 0/1 vector with its exact (Clopper-Pearson) interval."""
    from scipy.stats import binomtest
    correct = np.asarray(correct).astype(bool).ravel()
    n, k = correct.size, int(correct.sum())
    if n == 0:
        return {"n": 0, "acc": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}
    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    return {"n": n, "acc": k / n, "ci_low": float(ci.low), "ci_high": float(ci.high)}


def format_acc(stats):
    """'91.23% [90.66, 91.77] (n=10000)' from accuracy_ci's dict."""
    return (f"{100 * stats['acc']:.2f}% [{100 * stats['ci_low']:.2f}, "
            f"{100 * stats['ci_high']:.2f}] (n={stats['n']})")


def pct(stats):
    """'92.2 [91.6, 92.7]' from accuracy_ci's dict; '' for none."""
    if not stats:
        return ""
    return f"{100 * stats['acc']:.1f} [{100 * stats['ci_low']:.1f}, {100 * stats['ci_high']:.1f}]"


def atomic_write(path, write, mode="wb"):
    """Write a file through write(open file) so that readers see the old or the new
    content, never half (a temporary file beside it, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({"newline": ""} if "b" not in mode else {})) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def atomic_write_text(path, text):
    atomic_write(path, lambda f: f.write(text), mode="w")


ACCURACY = ("acc", "ci_low", "ci_high")   # a fraction and its exact interval: one column in Markdown


def _value(text):
    """A cell as the CSV holds it, back to a number where it is one."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def eps_text(eps):
    """A budget as the study wrote it where it is the study's ('20/255'), else '0.1'."""
    return "20/255" if abs(float(eps) - STUDY_EPS) < 1e-4 else f"{float(eps):g}"


def _column(name):
    """A column's name with its budget as the study wrote it: 'FGSM-k @20/255'."""
    head, at, eps = name.rpartition(" @")
    return f"{head} @{eps_text(eps)}" if at and isinstance(_value(eps), (int, float)) else name


def _cell(value, column=""):
    value = _value(str(value))
    if column == "eps" and isinstance(value, (int, float)):
        return eps_text(value)
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return f"{value:.1f}" if abs(value) >= 100 else f"{value:.4g}"
    return str(value)


def readable(rows):
    """How a table reads in Markdown: accuracy as '83.2 [82.5, 83.9]' (%, with its
    exact interval) in one column, and in such a table of measurements a column with
    one value in every row said once, in the caption (a digest already formatted keeps
    its columns). Returns (caption, header, lines); the same whether rows come from
    memory or back from the CSV."""
    columns = list(rows[0].keys()) if rows else []
    measured = all(c in columns for c in ACCURACY)
    constant = [c for c in columns if measured and len(rows) > 1 and c not in ACCURACY
                and len({_cell(r[c]) for r in rows}) == 1]
    shown = [c for c in columns if c not in constant and not (measured and c in ACCURACY[1:])]
    header = ["accuracy % [95%]" if measured and c == "acc" else _column(c) for c in shown]

    def cells(row):
        for c in shown:
            if measured and c == "acc":
                numbers = [str(row[k]) for k in ACCURACY]
                yield pct(dict(zip(ACCURACY, map(float, numbers)))) if all(numbers) else ""
            else:
                yield _cell(row[c], c)
    caption = "In every row: " + "; ".join(f"{c} {_cell(rows[0][c])}" for c in constant) + "." if constant else ""
    return caption, header, ["| " + " | ".join(cells(row)) + " |" for row in rows]


def csv_text(rows):
    """Rows (dicts with the same keys) as the text of a results CSV."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0].keys()) if rows else [], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_table(rows, path_stem, title=None, note=None, markdown_rows=None, markdown_body=None):
    """Write rows (a list of dicts with the same keys) as <stem>.csv and <stem>.md;
    a note, if given, is a paragraph under the Markdown table. The Markdown shows the
    rows as readable() makes them, or markdown_rows (a formatted digest of the CSV's
    rows) as they are, or markdown_body (text) instead of a table."""
    path_stem = str(path_stem)   # not Path.with_suffix: a stem like "..._eps0.1" has a dot of its own
    atomic_write_text(f"{path_stem}.csv", csv_text(rows))
    lines = [f"# {title}", ""] if title else []
    if markdown_body is not None:
        lines.append(markdown_body.rstrip())
    elif markdown_rows is not None:
        columns = list(markdown_rows[0].keys()) if markdown_rows else []
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in markdown_rows]
    else:
        caption, header, body = readable(rows)
        lines += [caption, ""] if caption else []
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + body
    lines += ["", note.strip()] if note else []
    atomic_write_text(f"{path_stem}.md", "\n".join(lines) + "\n")


def rerender_markdown(results_dir):
    """Write again, as readable() makes them, the Markdown of every table of results_dir
    whose Markdown is the plain rendering of its CSV (its header is the CSV's columns or
    readable()'s): tables a run wrote before the rendering changed read like new ones.
    Title and note are kept; tables with a digest of their own are left alone. Returns
    the tables rewritten."""
    rewritten = []
    for path in sorted(Path(results_dir).glob("*.csv")):
        md = path.with_suffix(".md")
        if not md.exists():
            continue
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            continue
        lines = md.read_text().splitlines()
        table = [i for i, line in enumerate(lines) if line.startswith("|")]
        if not table:
            continue
        header = [c.strip() for c in lines[table[0]].strip("|").split("|")]
        if header not in (list(rows[0].keys()), readable(rows)[1]):
            continue
        title = lines[0][2:] if lines[0].startswith("# ") else None
        note = "\n".join(lines[table[-1] + 1:]).strip() or None
        before = md.read_text()
        write_table(rows, path.with_suffix(""), title=title, note=note)
        if md.read_text() != before:
            rewritten.append(md.name)
    return rewritten


def markdown_table(path):
    """A written table's Markdown, its '# title' line as a bold caption."""
    lines = Path(path).read_text().splitlines()
    if lines and lines[0].startswith("# "):
        lines[0] = f"**{lines[0][2:]}**"
    return "\n".join(lines).strip() + "\n"


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path):
    """Save a matplotlib figure atomically as PNG and close it."""
    plt = pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)


def error_bars(stats_list):
    """matplotlib yerr/xerr (lower, upper) in percent from accuracy_ci dicts."""
    return [[100 * (s["acc"] - s["ci_low"]) for s in stats_list],
            [100 * (s["ci_high"] - s["acc"]) for s in stats_list]]


class Progress:
    """'certify: 120/500 images, 3.2/s, about 2 min left': rewritten in place on a
    terminal, one line at most every `every` seconds in a log file."""

    def __init__(self, total, label, unit="", every=30.0):
        self.total, self.label, self.unit, self.every = total, label, unit, every
        self.start = self.last = time.time()
        self.tty = sys.stdout.isatty()

    def update(self, done):
        now = time.time()
        if done < self.total and not self.tty and now - self.last < self.every:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        left = (self.total - done) / rate if done else float("nan")
        eta = f"about {left / 60:.0f} min left" if left >= 90 else f"about {left:.0f} s left"
        line = f"{self.label}: {done}/{self.total}{' ' + self.unit if self.unit else ''}, {rate:.2g}/s, " + \
               ("done in " + f"{now - self.start:.0f} s" if done >= self.total else eta)
        print(("\r" + line) if self.tty else line, end="\n" if not self.tty or done >= self.total else "",
              flush=True)
