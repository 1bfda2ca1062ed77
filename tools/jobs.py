"""The study's run job by job (dvc.yaml): each job's state from committed files alone
(current, stale or never run), and the stale jobs run one at a time, each committed
with its outputs, dvc.lock and its record (results/jobs/<job>.json: the job, the
commit whose code it ran, the machine's s/epoch, its minutes and epochs of compute).

    python tools/jobs.py status [--ready]       # make status; --ready: the jobs that can run now
    python tools/jobs.py run [--max-jobs N]     # make jobs: stale jobs, longest-waiting first
    python tools/jobs.py table                  # results/jobs.{csv,md}: every job's compute, and the sum
"""
import argparse
import collections
import csv
import fnmatch
import hashlib
import json
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

from import_graph import source_files

ROOT = Path(__file__).resolve().parent.parent
RECORDS = Path("results/jobs")
SPEED = Path(".jobs/machine_speed.csv")       # this machine's s/epoch, measured once (untracked)
FAILED = Path(".jobs/failed.json")            # {job: its inputs when it failed} on this machine (untracked)

Job = collections.namedtuple("Job", "cmd deps outs estimate")
LAST_RUN = (4.89, 9.6)      # the full run at 02eeec4: hours, and its machine's s/epoch (results/run_times.md)


def dvc(root, *args, capture=True):
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, text=True,
                            capture_output=capture)
    if result.returncode:
        sys.exit(f"jobs: dvc {' '.join(args)} failed:\n{result.stderr if capture else ''}")
    return result.stdout


def git(root, *args):
    return subprocess.run(["git", *args], cwd=root, text=True, capture_output=True, check=True).stdout.strip()


def stages(root=ROOT):
    """Every job of dvc.yaml in its order: {name: Job(cmd, deps, outs, estimate in epochs)}, paths from the root."""
    from dvc.repo import Repo
    with Repo(str(root)) as repo:
        return {s.name: Job(s.cmd, [str(d.def_path) for d in s.deps], [str(o.def_path) for o in s.outs],
                            (s.meta or {}).get("estimate_epochs")) for s in repo.index.stages}


def locked(root):
    """The jobs dvc.lock has a record of (they ran at least once)."""
    import yaml
    path = Path(root) / "dvc.lock"
    return set((yaml.safe_load(path.read_text()) or {}).get("stages", {})) if path.exists() else set()


def states(root=ROOT):
    """{job: 'current' | 'stale' | 'never run'}, by content hashes (dvc status), never by time."""
    changed = json.loads(dvc(root, "status", "--json") or "{}")
    ran = locked(root)
    return {name: "never run" if name not in ran else "stale" if name in changed else "current"
            for name in stages(root)}


def record(root, name):
    path = Path(root) / RECORDS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def reads(deps, outs):
    """Whether a job with these deps reads any of these outputs: the same path, or one
    inside the other (a job may read a folder other jobs write into)."""
    return any(d == o or o.startswith(d + "/") or d.startswith(o + "/") for d in deps for o in outs)


def ready(name, all_stages, state):
    """A job can run when no job whose output it reads is stale or has never run."""
    deps = all_stages[name].deps
    return not any(state[other] != "current" and reads(deps, job.outs)
                   for other, job in all_stages.items() if other != name)


def awaiting(all_stages, state):
    """The jobs whose outputs do not yet answer to today's code and inputs: every job not
    current, and every job downstream of one (it read outputs that will change)."""
    waiting = {n for n in all_stages if state[n] != "current"}
    grew = True
    while grew:
        made = [out for n in waiting for out in all_stages[n].outs]
        more = {n for n, job in all_stages.items() if n not in waiting and reads(job.deps, made)}
        waiting |= more
        grew = bool(more)
    return waiting


def next_job(root, all_stages, state, skip=()):
    """The stale job that has waited longest: never run first (in dvc.yaml's order),
    then the one whose last run is oldest; only jobs whose inputs are current, none of skip."""
    waiting = [n for n in all_stages if state[n] != "current" and ready(n, all_stages, state) and n not in skip]
    ran_at = lambda n: (record(root, n) or {}).get("finished", "")  # noqa: E731
    return min(waiting, key=lambda n: (state[n] != "never run", ran_at(n)), default=None)


def code_needed(root=ROOT, project=ROOT):
    """{job: (the project files its command can execute, the .py files its deps declare)}
    over every `python3 <script>.py` of a job's command (import_graph.source_files)."""
    found = {}
    for name, job in stages(root).items():
        scripts = [word for word in shlex.split(job.cmd) if word.endswith(".py")]
        found[name] = ({f for script in scripts for f in source_files(script, project)},
                       {d for d in job.deps if d.endswith(".py")})
    return found


def undeclared_dependencies(root=ROOT, project=ROOT):
    """{job: the project files its command can execute that its deps leave out}: a job
    whose code changed must read as stale."""
    return {name: sorted(needed - declared) for name, (needed, declared) in code_needed(root, project).items()
            if needed - declared}


def superfluous_dependencies(root=ROOT, project=ROOT):
    """{job: the code files its deps declare that its command never executes}: a change
    to a table's layout (or a test) must throw no job's compute away."""
    return {name: sorted(declared - needed) for name, (needed, declared) in code_needed(root, project).items()
            if declared - needed}


def machine_speed():
    """This machine's seconds per epoch of the standard CNN (benchmarks/machine_speed.py),
    measured the first time and kept in .jobs/ for the jobs after."""
    if not (ROOT / SPEED).exists():
        subprocess.run([sys.executable, "benchmarks/machine_speed.py", "--repeats", "1", "--results-dir",
                        str(SPEED.parent)], cwd=ROOT, check=True)
    with open(ROOT / SPEED, newline="") as f:
        return float(next(csv.DictReader(f))["seconds_per_epoch"])


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_job(root, name, outs, speed, commit):
    """Run one job with dvc repro, write its record and the job table, and commit them
    with its outputs and dvc.lock, naming the job, its minutes and the machine's speed."""
    code_commit = git(root, "rev-parse", "HEAD")
    dirty = git(root, "status", "--porcelain", "--untracked-files=no")
    print(f"job {name}: started {time.strftime('%H:%M:%S')} at {code_commit[:7]}", flush=True)
    start = time.time()
    if subprocess.run([sys.executable, "-m", "dvc", "repro", "--single-item", name], cwd=root).returncode:
        return False
    minutes = (time.time() - start) / 60
    rec = {"job": name, "commit": code_commit, "uncommitted_changes": bool(dirty),
           "machine_s_per_epoch": speed, "cpu": cpu_name(), "minutes": round(minutes, 1),
           "epochs": round(minutes * 60 / speed, 1), "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    path = RECORDS / f"{name}.json"
    (Path(root) / path).parent.mkdir(parents=True, exist_ok=True)
    (Path(root) / path).write_text(json.dumps(rec, indent=2) + "\n")
    # a report job of seconds reads 0.8 epochs, not 1
    epochs = f"{rec['epochs']:.1f}" if rec["epochs"] < 10 else f"{rec['epochs']:.0f}"
    message = (f"job {name}: {minutes:.1f} min, {epochs} epochs of the standard CNN at "
               f"{speed:g} s/epoch ({rec['cpu']})")
    print(message, flush=True)
    table(root)
    if commit:
        paths = [*outs, "dvc.lock", str(path), "results/jobs.csv", "results/jobs.md"]
        git(root, "add", "--", *paths)
        git(root, "commit", "-q", "-m", message, "--", *paths)
    return True


def job_inputs(root, job):
    """A fingerprint of a job's command and the committed content of every file it reads."""
    listing = git(root, "ls-files", "-s", "--", *job.deps)
    return hashlib.sha256(f"{job.cmd}\n{listing}".encode()).hexdigest()[:16]


def run(max_jobs, commit, root=ROOT, speed=None, leave=(), only=None):
    """Run the stale jobs one at a time, none whose name matches a pattern of leave
    (fnmatch) and, given only, none that matches no pattern of it. A job that fails is
    named, and skipped on this machine until its command or a file it reads changes
    (.jobs/failed.json), while the others go on. Returns whether every job it ran
    succeeded."""
    speed = speed or machine_speed()
    failed_path = Path(root) / FAILED
    failed = json.loads(failed_path.read_text()) if failed_path.exists() else {}
    done, ok = 0, True
    while max_jobs is None or done < max_jobs:
        all_stages, state = stages(root), states(root)
        skip = {job for job, inputs in failed.items()
                if job in all_stages and inputs == job_inputs(root, all_stages[job])}
        left_alone = {job for job in all_stages if any(fnmatch.fnmatchcase(job, p) for p in leave)
                      or only and not any(fnmatch.fnmatchcase(job, p) for p in only)}
        name = next_job(root, all_stages, state, skip | left_alone)
        if name is None:
            left = [n for n in all_stages if state[n] != "current"]
            unrun = left_alone & set(left)
            print("every job is current" if not left else f"{len(left)} jobs wait for inputs that cannot be made"
                  + (f", or failed with the inputs they have: {', '.join(sorted(skip))}" if skip else "")
                  + (f", or were left alone (--leave, --only): {len(unrun)}" if unrun else ""))
            return ok
        if not run_job(root, name, all_stages[name].outs, speed, commit):
            failed[name], ok = job_inputs(root, all_stages[name]), False
            failed_path.parent.mkdir(parents=True, exist_ok=True)
            failed_path.write_text(json.dumps(failed, indent=1) + "\n")
            print(f"job {name}: FAILED; skipped on this machine until its command or inputs change", flush=True)
        done += 1
    return ok


def status(ready_only=False):
    all_stages, state = stages(), states()
    if ready_only:   # one per line: the jobs that can run now, e.g. for a Slurm array
        print("\n".join(n for n in all_stages if state[n] != "current" and ready(n, all_stages, state)))
        return
    width = max(map(len, all_stages))
    for name in all_stages:
        rec = record(ROOT, name)
        ran = f"  last run at {rec['commit'][:7]}, {rec['minutes']} min at {rec['machine_s_per_epoch']:g} s/epoch" \
            if rec else ""
        print(f"{name:<{width}}  {state[name]:<9}{ran}")
    counts = {s: sum(v == s for v in state.values()) for s in ("current", "stale", "never run")}
    print(", ".join(f"{n} {s}" for s, n in counts.items()))
    published = sorted(out for n in awaiting(all_stages, state) for out in all_stages[n].outs
                       if out.startswith("results/") and not out.startswith("results/per_image/"))
    if published:
        print(f"published tables and figures from jobs not current or downstream of one ({len(published)}): "
              + ", ".join(published))


# headers of the job table's own, so that tools/redraw_results.py (rerender_markdown) leaves it as written
MARKDOWN_HEADER = {"estimate_epochs": "estimated epochs", "machine_s_per_epoch": "machine s/epoch", "cpu": "CPU"}


def table(root=ROOT):
    """results/jobs.{csv,md}: every job with its state and compute, in epochs of the
    standard CNN (minutes x 60 / its machine's s/epoch) and minutes; a job that has not
    run with its estimate, marked; the sum against the last full run; the zoo's bytes."""
    all_stages, state = stages(root), states(root)
    rows, total, estimated = [], 0.0, 0.0
    for name, job in all_stages.items():
        rec = record(root, name) if state[name] != "never run" else None
        if rec:
            total += rec["epochs"]
        elif job.estimate:
            estimated += job.estimate
        rows.append({"job": name, "state": state[name], "epochs": rec["epochs"] if rec else "",
                     "estimate_epochs": "" if rec else job.estimate or "none yet",
                     "minutes": rec["minutes"] if rec else "", "machine_s_per_epoch": rec["machine_s_per_epoch"]
                     if rec else "", "cpu": rec["cpu"] if rec else "", "commit": rec["commit"][:7] if rec else "",
                     "finished": rec["finished"] if rec else ""})
    zoo = {p.parent.name: 0 for p in (Path(root) / "zoo").glob("*/*.keras")}
    for path in (Path(root) / "zoo").glob("*/*.keras"):
        zoo[path.parent.name] += path.stat().st_size
    hours, speed = LAST_RUN
    counts = collections.Counter(state.values())
    note = (f"{len(rows)} jobs: {counts['current']} current, {counts['stale']} stale, {counts['never run']} never run. "
            f"Run so far: {total:,.0f} epochs of the standard CNN; estimated for the jobs not run: "
            f"{estimated:,.0f} (jobs without an estimate left out); the last full run (02eeec4) took {hours} h at "
            f"{speed} s/epoch, {hours * 3600 / speed:,.0f} epochs. Model zoo: " +
            (", ".join(f"{p} {b / 2 ** 20:.1f} MiB" for p, b in sorted(zoo.items())) or "empty") + ".")
    sys.path.insert(0, str(ROOT))
    from fashion_defenses.reporting import write_table
    # shown as written, not as readable() reads cells: a commit such as 80235e7 is not a number
    shown = [{MARKDOWN_HEADER.get(column, column): value for column, value in row.items()} for row in rows]
    write_table(rows, Path(root) / "results" / "jobs", title="The run's jobs (dvc.yaml): state and compute of "
                "each (tools/jobs.py table)", note=note, markdown_rows=shown)
    print(note)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    sub = parser.add_subparsers(dest="command", required=True)
    lister = sub.add_parser("status", help="each job's state, from committed files alone")
    lister.add_argument("--ready", action="store_true", help="only the names of the jobs that can run now")
    runner = sub.add_parser("run", help="run the stale jobs one at a time, committing each")
    runner.add_argument("--max-jobs", type=int, default=None, help="stop after this many jobs (default: all)")
    runner.add_argument("--no-commit", action="store_true", help="leave the finished jobs uncommitted")
    runner.add_argument("--leave", metavar="PATTERN", action="append", default=[],
                        help="run no job whose name matches this shell pattern, e.g. 'evaluate@*' (repeatable)")
    runner.add_argument("--only", metavar="PATTERN", action="append",
                        help="run only the jobs whose names match this shell pattern (repeatable); those they wait "
                             "for must be current")
    sub.add_parser("table", help="write results/jobs.{csv,md}: every job's compute and the sum")
    args = parser.parse_args()
    if args.command == "status":
        try:
            status(args.ready)
        except BrokenPipeError:   # `status | head`: the reader has all it wants
            sys.stderr.close()
    elif args.command == "table":
        table()
    elif not run(args.max_jobs, not args.no_commit, leave=args.leave, only=args.only):
        sys.exit(1)


if __name__ == "__main__":
    main()
