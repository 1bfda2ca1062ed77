"""Time a make target (`make test`, the smoke run of every script) and record it in
<results-dir>/run_times.csv, one row per run, and run_times.md, each target's latest
successful run: how long it took, at which commit, on how many CPUs and which GPU, its
peak memory, and how fast the machine trains the standard CNN
(benchmarks/machine_speed.py, measured just before), since machines differ up to 4x.

The study's own jobs are timed by tools/jobs.py (results/jobs.md); results/run_times.md
is the record of the last run made in one piece (02eeec4), kept as it was written.

    python tools/timed.py [--results-dir DIR] COMMAND [ARG ...]   # DIR: benchmarks/results
    python tools/timed.py [--results-dir DIR] --summary     # rewrite run_times.md only
"""
import csv
import datetime
import io
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from fashion_defenses.reporting import atomic_write_text  # noqa: E402

FIELDS = ["finished_utc", "command", "exit", "wall_s", "commit", "cpus", "gpu", "host", "peak_rss_mib",
          "machine_s_per_epoch"]
SPEED_TABLE = "machine_speed.csv"   # benchmarks/machine_speed.py's output, in the same folder


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


def peak_rss_mib():
    """The peak resident memory of the largest process the command ran (make's children
    included: the kernel keeps the maximum over every waited-for descendant)."""
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10))   # bytes on macOS, KiB on Linux


def target_of(command):
    """What a row times, as a reader types it: a make command without make's own options
    and variable settings (`make test PYTEST_FLAGS=...` is `make test`)."""
    words = command.split()
    if words[:1] != ["make"]:
        return command
    kept = []
    for word, before in zip(words, [""] + words):
        if not word.startswith("-") and "=" not in word and before != "-C":   # -C DIR: where make ran
            kept.append(word)
    return " ".join(kept)


def write_markdown(rows, path):
    """A sentence per target: its latest successful run. False when none succeeded."""
    latest = {}
    for r in rows:
        if r["exit"] == "0":
            latest.pop(target_of(r["command"]), None)
            latest[target_of(r["command"])] = r
    if not latest:
        return False
    lines = ["# Wall time of the test suite and the smoke run (tools/timed.py)"]
    for target, r in latest.items():
        speed = (f", on a machine that trained the standard base CNN at {r['machine_s_per_epoch']} s per epoch"
                 if r.get("machine_s_per_epoch") else "")
        lines += ["", f"`{target}` took {float(r['wall_s']) / 60:.1f} minutes on {r['cpus']} CPUs, GPU {r['gpu']} "
                  f"({r['finished_utc']}, commit {r['commit']}){speed}."]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return True


def machine_speed(results_dir):
    """The standard CNN's seconds per epoch on this machine, as benchmarks/machine_speed.py
    wrote it into results_dir; None when it has not."""
    try:
        with open(Path(results_dir) / SPEED_TABLE, newline="") as f:
            return float(next(csv.DictReader(f))["seconds_per_epoch"])
    except (OSError, StopIteration, KeyError, ValueError):
        return None


def read_rows(path):
    """The recorded runs, with the columns of today (older records had more)."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{field: r.get(field) or "" for field in FIELDS} for r in csv.DictReader(f)]


def record(results_dir, row):
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / "run_times.csv"
    rows = read_rows(path) + [{field: str(row.get(field, "")) for field in FIELDS}]
    table = io.StringIO()
    writer = csv.DictWriter(table, FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, table.getvalue())
    write_markdown(rows, results_dir / "run_times.md")


def run_forwarding_signals(argv):
    """Run the command; SIGTERM and SIGHUP sent to us go on to it (so it stops, and its
    exit code is recorded), even one that arrives before it has started."""
    child, pending = None, []

    def forward(signum, frame):
        if child is None:
            pending.append(signum)
        else:
            child.send_signal(signum)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    child = subprocess.Popen(argv)
    for signum in pending:
        child.send_signal(signum)
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:   # the command got the Ctrl-C too: wait for it to stop
            pass


def make_dry_run():
    """Whether make called us with -n (its single-letter flags are MAKEFLAGS' first word)."""
    first = (os.environ.get("MAKEFLAGS", "").split() or [""])[0]
    return not first.startswith("-") and "n" in first


def main(argv):
    results_dir = ROOT / "benchmarks" / "results"
    if argv[:1] == ["--results-dir"] and len(argv) > 1:
        results_dir, argv = Path(argv[1]), argv[2:]
    if argv == ["--summary"]:
        path = results_dir / "run_times.csv"
        if not write_markdown(read_rows(path), results_dir / "run_times.md"):
            print(f"error: no successful run recorded in {path}: nothing to summarise", file=sys.stderr)
            return 1
        return 0
    if not argv or argv[0].startswith("--"):
        print("usage: python tools/timed.py [--results-dir DIR] COMMAND [ARG ...] | [--results-dir DIR] --summary",
              file=sys.stderr)
        return 2
    if make_dry_run():   # `make -n` runs a recursive make line: pass it through, time nothing
        return subprocess.call(argv)
    if shutil.which(argv[0]) is None and not Path(argv[0]).is_file():
        print(f"error: cannot run {argv[0]}: no such program", file=sys.stderr)
        return 2
    # the python interpreter's path says nothing to a reader: record the script and its flags
    shown = ["python"] + argv[1:] if Path(argv[0]).name.startswith("python") else argv
    row = {"command": " ".join(shown), "commit": commit(), **machine(),   # the code that runs, even if HEAD moves
           "machine_s_per_epoch": machine_speed(results_dir) or ""}
    started = time.time()
    code = run_forwarding_signals(argv)
    code = 128 - code if code < 0 else code   # killed by signal N: the shell's 128 + N
    finished = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    try:
        record(results_dir, {**row, "finished_utc": finished, "exit": code, "wall_s": round(time.time() - started, 1),
                             "peak_rss_mib": peak_rss_mib()})
    except OSError as error:  # the command's own exit code still stands
        print(f"error: cannot record the wall time in {results_dir}: {error}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
