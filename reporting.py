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


def _cell(value):
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def write_table(rows, path_stem, title=None, note=None, markdown_rows=None, markdown_body=None):
    """Write rows (a list of dicts with the same keys) as <stem>.csv and <stem>.md;
    a note, if given, is a paragraph under the Markdown table. markdown_rows, if given,
    are what the Markdown table shows instead (a formatted digest of the CSV's rows);
    markdown_body, if given, replaces the table with that text."""
    path_stem = str(path_stem)   # not Path.with_suffix: a stem like "..._eps0.1" has a dot of its own
    columns = list(rows[0].keys()) if rows else []
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(f"{path_stem}.csv", buffer.getvalue())
    if markdown_rows is not None:
        rows = markdown_rows
        columns = list(rows[0].keys()) if rows else []
    lines = [f"# {title}", ""] if title else []
    if markdown_body is not None:
        lines.append(markdown_body.rstrip())
    else:
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_cell(row[c]) for c in columns) + " |" for row in rows]
    lines += ["", note.strip()] if note else []
    atomic_write_text(f"{path_stem}.md", "\n".join(lines) + "\n")


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
