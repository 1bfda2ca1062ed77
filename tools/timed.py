"""Run one stage of the full run and record its wall time in results/run_times.csv
and .md: the command, the commit and machine it ran on, how long it took and how it
ended. The Makefile runs every stage through it, so the time a full run takes is
measured, stage by stage, not estimated.

    python tools/timed.py [--results-dir results] COMMAND [ARG ...]
"""
import csv
import datetime
import io
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from reporting import atomic_write_text  # noqa: E402  (no TensorFlow: this wrapper starts fast)

FIELDS = ["finished_utc", "command", "exit", "wall_s", "commit", "cpus", "gpu", "host"]


def machine():
    gpu = "none"
    if shutil.which("nvidia-smi"):
        probe = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                               capture_output=True, text=True)
        gpu = probe.stdout.strip().replace("\n", "; ") or "none"
    return {"cpus": os.cpu_count(), "gpu": gpu, "host": platform.node()}


def commit():
    try:
        probe = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    except OSError:  # no git on this machine
        return "unknown"
    return probe.stdout.strip() or "unknown"


def write_markdown(rows, path):
    """Every recorded stage, and the sum over the latest successful run of each command."""
    latest = {r["command"]: float(r["wall_s"]) for r in rows if r["exit"] == "0"}
    lines = ["# Wall time of each stage of the full run (tools/timed.py; latest run last)", "",
             "| " + " | ".join(FIELDS) + " |", "|" + "---|" * len(FIELDS)]
    lines += ["| " + " | ".join(str(r[f]) for f in FIELDS) + " |" for r in rows]
    lines += ["", f"Sum over the latest successful run of each of the {len(latest)} commands: "
                  f"{sum(latest.values()) / 3600:.2f} h."]
    atomic_write_text(path, "\n".join(lines) + "\n")


def record(results_dir, row):
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / "run_times.csv"
    rows = list(csv.DictReader(path.open())) if path.exists() else []
    rows.append({k: str(v) for k, v in row.items()})
    table = io.StringIO()
    writer = csv.DictWriter(table, FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, table.getvalue())
    write_markdown(rows, results_dir / "run_times.md")


def main(argv):
    results_dir = Path("results")
    if argv[:1] == ["--results-dir"]:
        results_dir, argv = (Path(argv[1]), argv[2:]) if len(argv) > 1 else (None, [])
    if not argv:
        print("usage: python tools/timed.py [--results-dir DIR] COMMAND [ARG ...]", file=sys.stderr)
        return 2
    started_at = commit()  # the code that runs, even if HEAD moves while it does
    start = time.perf_counter()
    try:
        code = subprocess.call(argv)
    except KeyboardInterrupt:
        code = 130
    except OSError as error:
        print(f"error: cannot run {argv[0]}: {error}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - start
    # the python interpreter's path says nothing to a reader: record the script and its flags
    shown = ["python"] + argv[1:] if Path(argv[0]).name.startswith("python") else argv
    try:
        record(results_dir, {"finished_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
                             "command": " ".join(shown), "exit": code, "wall_s": round(wall, 1),
                             "commit": started_at, **machine()})
    except OSError as error:  # the stage's own exit code still stands
        print(f"error: cannot record the wall time in {results_dir}: {error}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
