"""Run one stage of the full run and record its wall time in results/run_times.csv
and .md: the command, the commit and machine it ran on, how long it took, how it
ended, and the models it trained (the sidecars that appeared or changed under models/
while it ran). The Makefile runs every stage through it, so the time a full run takes
is measured, stage by stage, not estimated.

    python tools/timed.py [--results-dir results] [--models-dir models] COMMAND [ARG ...]
    python tools/timed.py [--results-dir results] --summary     # rewrite run_times.md only
"""
import csv
import datetime
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from reporting import atomic_write_text  # noqa: E402  (no TensorFlow: this wrapper starts fast)

FIELDS = ["finished_utc", "command", "exit", "wall_s", "commit", "cpus", "gpu", "host", "models_trained",
          "train_s"]
SPEED_MODEL = "standard_cnn.json"   # its seconds per epoch tell how fast the machine is


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


def sidecars(models_dir):
    """{sidecar path: modification time} of every model under models_dir."""
    return {p: p.stat().st_mtime for p in Path(models_dir).rglob("*.json")} if Path(models_dir).is_dir() else {}


def trained_during(before, after):
    """(names, training seconds) of the models whose sidecar appeared or changed."""
    names, seconds = [], 0.0
    for path, mtime in sorted(after.items()):
        if before.get(path) == mtime:
            continue
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        names.append(path.stem if path.parent.name == "models" else f"{path.parent.name}/{path.stem}")
        seconds += float(meta.get("train_seconds") or 0)
    return names, seconds


def stage_of(command):
    """The stage a command runs: the command without the folders it read and wrote."""
    words, kept = command.split(), []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in ("--models-dir", "--results-dir"):
            skip = True
        else:
            kept.append(word)
    return " ".join(kept)


def write_markdown(rows, path, speed=None):
    """One row per stage (its latest successful run, in the order the stages ran), the
    models it trained, and the sum; every run stays in the CSV."""
    latest = {}
    for r in rows:
        if r["exit"] == "0":
            stage = stage_of(r["command"])
            latest.pop(stage, None)
            latest[stage] = r
    lines = ["# Wall time of each stage (tools/timed.py: the latest successful run of each command)", "",
             "| stage | minutes | models trained (their training minutes) | finished (UTC) | commit |",
             "|---|---|---|---|---|"]
    for r in latest.values():
        trained = r.get("models_trained") or ""
        count = len(trained.split(";")) if trained else 0
        models = (f"{count} ({float(r['train_s']) / 60:.1f})" if count else
                  "none" if r.get("train_s") else "not recorded")
        lines.append(f"| `{stage_of(r['command'])}` | {float(r['wall_s']) / 60:.1f} | {models} | {r['finished_utc']} | "
                     f"{r['commit']} |")
    total = sum(float(r["wall_s"]) for r in latest.values())
    machines = sorted({f"{r['cpus']} CPUs, GPU {r['gpu']}" for r in latest.values()})
    lines += ["", f"Sum over the {len(latest)} stages: {total / 3600:.2f} h on {'; '.join(machines)}."
              + (f" Machine speed: the standard base CNN trained at {speed:g} s per epoch here (machines differ "
                 "up to 4x; scale the minutes by it)." if speed else "")
              + " Which models each stage trained: the `models_trained` column of run_times.csv."]
    atomic_write_text(path, "\n".join(lines) + "\n")


def machine_speed(models_dir):
    path = Path(models_dir) / SPEED_MODEL
    try:
        return json.loads(path.read_text()).get("seconds_per_epoch")
    except (OSError, ValueError):
        return None


def record(results_dir, row, speed=None):
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / "run_times.csv"
    rows = list(csv.DictReader(path.open())) if path.exists() else []
    rows.append({k: str(v) for k, v in row.items()})
    rows = [{f: r.get(f, "") for f in FIELDS} for r in rows]   # older records lack the newer columns
    table = io.StringIO()
    writer = csv.DictWriter(table, FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, table.getvalue())
    write_markdown(rows, results_dir / "run_times.md", speed)


def main(argv):
    results_dir, models_dir = Path("results"), Path("models")
    while argv[:1] in (["--results-dir"], ["--models-dir"]) and len(argv) > 1:
        if argv[0] == "--results-dir":
            results_dir = Path(argv[1])
        else:
            models_dir = Path(argv[1])
        argv = argv[2:]
    if argv == ["--summary"]:   # rewrite run_times.md from the CSV (make readme)
        path = results_dir / "run_times.csv"
        rows = [{f: r.get(f, "") for f in FIELDS} for r in csv.DictReader(path.open())] if path.exists() else []
        write_markdown(rows, results_dir / "run_times.md", machine_speed(models_dir))
        return 0
    if not argv or argv[0].startswith("--"):
        print("usage: python tools/timed.py [--results-dir DIR] [--models-dir DIR] COMMAND [ARG ...] | --summary",
              file=sys.stderr)
        return 2
    started_at = commit()  # the code that runs, even if HEAD moves while it does
    before = sidecars(models_dir)
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
    names, train_seconds = trained_during(before, sidecars(models_dir))
    try:
        record(results_dir, {"finished_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
                             "command": " ".join(shown), "exit": code, "wall_s": round(wall, 1),
                             "commit": started_at, **machine(), "models_trained": ";".join(names),
                             "train_s": round(train_seconds, 1)}, machine_speed(models_dir))
    except OSError as error:  # the stage's own exit code still stands
        print(f"error: cannot record the wall time in {results_dir}: {error}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
