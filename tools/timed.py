"""Run one stage of the full run and record its wall time in results/run_times.csv
and .md: the command, the commit and machine it ran on, how long it took, how it
ended, its peak memory, and the models it trained (the sidecars that appeared or changed
under models/ while it ran). The Makefile runs every stage through it, so the time a full
run takes is measured, stage by stage, not estimated.

A stage interrupted (Ctrl-C, SIGTERM, SIGHUP) is recorded with its exit code; one killed
outright leaves its attempt file in results/.timed/, whose last heartbeat (written every
30 s) the next timed stage records as a "killed" attempt. Stages resume, so a stage's
time is its successful run plus the attempts that failed before it.

    python tools/timed.py [--results-dir results] [--models-dir models] COMMAND [ARG ...]
    python tools/timed.py [--results-dir results] --summary     # rewrite run_times.md only
"""
import csv
import datetime
import io
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fashion_defenses.reporting import atomic_write_text

FIELDS = ["finished_utc", "command", "exit", "wall_s", "commit", "cpus", "gpu", "host", "models_trained",
          "train_s", "peak_rss_mib", "machine_s_per_epoch"]
# the base CNN's seconds per epoch tell how fast the machine is: as the run's model.py
# recorded it, or, for make targets timed apart (benchmarks/results/), as
# benchmarks/machine_speed.py measured it
SPEED_TABLES = ("base_model_standard.csv", "machine_speed.csv")
# the full run's budget: this many hours of stage time on a machine that trains the
# standard base CNN at BUDGET_S_PER_EPOCH; a machine's sum is scaled by its own speed
BUDGET_HOURS = 7.0
BUDGET_S_PER_EPOCH = 10.0
HEARTBEAT_S = 30


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
    """{sidecar path: modification time} of every model under models_dir; a hidden file
    or folder (a training's epoch log or checkpoint, kept while it runs) is no model."""
    root = Path(models_dir)
    if not root.is_dir():
        return {}
    return {p: p.stat().st_mtime for p in root.rglob("*.json")
            if not any(part.startswith(".") for part in p.relative_to(root).parts)}


def trained_during(before, after):
    """(names, training seconds) of the models whose sidecar appeared or changed; a
    snapshot's seconds are part of the run it was taken from, so they count once."""
    names, seconds = [], 0.0
    for path, mtime in sorted(after.items()):
        if before.get(path) == mtime:
            continue
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        names.append(path.stem if path.parent.name == "models" else f"{path.parent.name}/{path.stem}")
        seconds += 0.0 if meta.get("snapshot_of") else float(meta.get("train_seconds") or 0)
    return names, seconds


def peak_rss_mib():
    """The peak resident memory of the largest process the stage ran (make's children
    included: the kernel keeps the maximum over every waited-for descendant)."""
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10))   # bytes on macOS, KiB on Linux


def stage_of(command):
    """The stage a command runs: the command without the folders it read and wrote."""
    words, kept = command.split(), []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in ("--models-dir", "--results-dir"):
            skip = True
        elif word == "--no-print-directory":
            continue
        else:
            kept.append(word)
    return " ".join(kept)


def write_markdown(rows, path, speed=None):
    """One row per stage (its latest successful run with the attempts that failed or were
    interrupted before it, in the order the stages ran), the models they trained, and
    the sum; every attempt stays in the CSV."""
    latest, failed = {}, {}
    for r in rows:
        stage = stage_of(r["command"])
        if r["exit"] != "0":
            failed.setdefault(stage, []).append(r)
            continue
        latest.pop(stage, None)
        latest[stage] = [*failed.pop(stage, []), r]
    if not latest:
        return False
    # a make target timed as a whole (make quick) is not a stage of the full run
    apart = {stage: latest.pop(stage) for stage in list(latest) if stage.split()[0] == "make"}
    if latest:
        lines = ["# Wall time of each stage (tools/timed.py: the latest successful run of each command, with the "
                 "attempts interrupted before it)", "", *stage_table(latest, speed)]
    else:   # a folder that records only make targets (make quick's, apart from the full run's)
        lines = ["# Wall time of make targets timed apart from the full run (tools/timed.py)"]
    for stage, attempts in apart.items():
        lines += ["", ("Not part of the full run: " if latest else "")
                  + f"`{stage}` took {sum(float(a['wall_s']) for a in attempts) / 60:.1f} minutes on "
                  f"{attempts[-1]['cpus']} CPUs, GPU {attempts[-1]['gpu']} ({attempts[-1]['finished_utc']}, "
                  f"commit {attempts[-1]['commit']})"
                  + (f", on a machine that trained the standard base CNN at {attempts[-1]['machine_s_per_epoch']} s "
                     "per epoch." if attempts[-1].get("machine_s_per_epoch") else ".")]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return True


def stage_table(latest, speed):
    """The Markdown table of {stage: its attempts} and the sentence with their sum (the
    peak memory column only where some stage recorded it)."""
    memory_recorded = any(a.get("peak_rss_mib") for attempts in latest.values() for a in attempts)
    columns = ["stage", "minutes", "attempts", "models trained (their training minutes)"]
    columns += ["peak memory (GiB)"] * memory_recorded + ["finished (UTC)", "commit"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for attempts in latest.values():
        r = attempts[-1]
        trained = [name for a in attempts for name in (a.get("models_trained") or "").split(";") if name]
        train_s = sum(float(a.get("train_s") or 0) for a in attempts)
        models = (f"{len(trained)} ({train_s / 60:.1f})" if trained else
                  "none" if r.get("train_s") else "not recorded")
        minutes = sum(float(a["wall_s"]) for a in attempts) / 60
        peaks = [float(a["peak_rss_mib"]) for a in attempts if a.get("peak_rss_mib")]
        memory = f"{max(peaks) / 1024:.1f}" if peaks else "not recorded"
        commits = ", ".join(dict.fromkeys(a["commit"] for a in attempts))
        cells = [f"`{stage_of(r['command'])}`", f"{minutes:.1f}", str(len(attempts)), models]
        cells += [memory] * memory_recorded + [r["finished_utc"], commits]
        lines.append("| " + " | ".join(cells) + " |")
    total = sum(float(a["wall_s"]) for attempts in latest.values() for a in attempts)
    machines = sorted({f"{a['cpus']} CPUs, GPU {a['gpu']}" for attempts in latest.values() for a in attempts})
    return lines + ["", f"Sum over the {len(latest)} stages: {total / 3600:.2f} h on {'; '.join(machines)}."
                    + (f" Machine speed: the standard base CNN trained at {speed:g} s per epoch here (machines "
                       "differ up to 4x; scale the minutes by it)." + against_budget(total, speed) if speed else "")
                    + " Which models each stage trained: the `models_trained` column of run_times.csv."]


def against_budget(total_s, speed):
    """The sum scaled to the budget's machine speed, set against the budget."""
    scaled = total_s / 3600 * BUDGET_S_PER_EPOCH / speed
    verdict = "within it" if scaled <= BUDGET_HOURS else f"{scaled - BUDGET_HOURS:.2f} h over"
    return (f" At {BUDGET_S_PER_EPOCH:g} s per epoch that is {scaled:.2f} h, against the full run's budget of "
            f"{BUDGET_HOURS:g} h ({verdict}).")


def machine_speed(results_dir):
    """The standard base CNN's seconds per epoch on this machine, from the first of
    SPEED_TABLES in results_dir; None before either was written."""
    for name in SPEED_TABLES:
        try:
            with open(Path(results_dir) / name, newline="") as f:
                return float(next(csv.DictReader(f))["seconds_per_epoch"])
        except (OSError, StopIteration, KeyError, ValueError):
            continue
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


def utc(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")


def record_killed_attempts(results_dir, models_dir, speed):
    """Attempt files left by stages killed outright: a row each, timed to its last
    heartbeat (a file with a recent heartbeat is a stage still running), with the
    models whose sidecars were written between its start and its kill."""
    for path in sorted((results_dir / ".timed").glob("*.json")):
        try:
            attempt = json.loads(path.read_text())
            heartbeat = path.stat().st_mtime
        except (OSError, ValueError):
            continue
        if time.time() - heartbeat < 3 * HEARTBEAT_S:
            continue
        during = {p: mtime for p, mtime in sidecars(models_dir).items()
                  if attempt["started"] <= mtime <= heartbeat + HEARTBEAT_S}
        names, train_seconds = trained_during({}, during)
        record(results_dir, {**attempt.pop("row"), "finished_utc": utc(heartbeat), "exit": "killed",
                             "wall_s": round(heartbeat - attempt["started"], 1), "models_trained": ";".join(names),
                             "train_s": round(train_seconds, 1)}, speed)
        path.unlink()


def run_with_heartbeat(argv, attempt_file, attempt):
    """Write attempt_file, run the stage, touch the file every HEARTBEAT_S seconds; pass
    SIGTERM and SIGHUP on to the stage (it stops cleanly, and its exit code is
    recorded). The handlers are in place before the file appears, so a signal sent as
    soon as it exists reaches the stage, even one sent before the stage has started."""
    child, pending = None, []

    def forward(signum, frame):
        if child is None:
            pending.append(signum)
        else:
            child.send_signal(signum)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    attempt_file.write_text(json.dumps(attempt))
    child = subprocess.Popen(argv)
    for signum in pending:
        child.send_signal(signum)
    while True:
        try:
            return child.wait(timeout=HEARTBEAT_S)
        except subprocess.TimeoutExpired:
            attempt_file.touch()
        except KeyboardInterrupt:   # the stage got the Ctrl-C too: wait for it to stop
            pass


def make_dry_run():
    """Whether make called us with -n (its single-letter flags are MAKEFLAGS' first word)."""
    first = (os.environ.get("MAKEFLAGS", "").split() or [""])[0]
    return not first.startswith("-") and "n" in first


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
        if not write_markdown(rows, results_dir / "run_times.md", machine_speed(results_dir)):
            print(f"error: no successful stage recorded in {path}: nothing to summarise", file=sys.stderr)
            return 1
        return 0
    if not argv or argv[0].startswith("--"):
        print("usage: python tools/timed.py [--results-dir DIR] [--models-dir DIR] COMMAND [ARG ...] | --summary",
              file=sys.stderr)
        return 2
    if make_dry_run():   # `make -n` runs a recursive make line: pass it through, time nothing
        return subprocess.call(argv)
    if shutil.which(argv[0]) is None and not Path(argv[0]).is_file():
        print(f"error: cannot run {argv[0]}: no such program", file=sys.stderr)
        return 2
    speed = machine_speed(results_dir)
    record_killed_attempts(results_dir, models_dir, speed)
    # the python interpreter's path says nothing to a reader: record the script and its flags
    shown = ["python"] + argv[1:] if Path(argv[0]).name.startswith("python") else argv
    row = {"command": " ".join(shown), "commit": commit(), **machine()}  # the code that runs, even if HEAD moves
    attempt_file = results_dir / ".timed" / f"{os.getpid()}-{time.time_ns()}.json"
    attempt_file.parent.mkdir(parents=True, exist_ok=True)
    before = sidecars(models_dir)
    started = time.time()
    code = run_with_heartbeat(argv, attempt_file,
                              {"started": started, "row": {**row, "models_trained": "", "train_s": ""}})
    code = 128 - code if code < 0 else code   # killed by signal N: the shell's 128 + N
    wall = time.time() - started
    names, train_seconds = trained_during(before, sidecars(models_dir))
    try:
        record(results_dir, {**row, "finished_utc": utc(time.time()), "exit": code, "wall_s": round(wall, 1),
                             "models_trained": ";".join(names), "train_s": round(train_seconds, 1),
                             "peak_rss_mib": peak_rss_mib(), "machine_s_per_epoch": speed or ""},
               machine_speed(results_dir))
    except OSError as error:  # the stage's own exit code still stands
        print(f"error: cannot record the wall time in {results_dir}: {error}", file=sys.stderr)
    attempt_file.unlink(missing_ok=True)   # the stage ended: it must not be counted as killed later
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
