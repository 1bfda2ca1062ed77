"""The run's digest from the tables its jobs wrote, running nothing: results/summary.md,
findings.md, headline, the compact Table 4, results/README.md (every table) and
results/provenance.md (which jobs made them, at which commits, on which machines, and
whether any was stale). The pipeline's last job (dvc.yaml `publish`, followed by
tools/update_readme.py for the README's blocks).

    python tools/publish.py [results]
"""
import argparse
import collections
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fashion_defenses.evaluation.digest import write_digest  # noqa: E402
from fashion_defenses.evaluation.report import write_summary  # noqa: E402
from fashion_defenses.reporting import atomic_write_text  # noqa: E402


def provenance(jobs_csv):
    """A paragraph on the jobs behind results/, from the job table (tools/jobs.py table,
    committed with every job): how many, at which commits and machine speeds, when, and
    which of them were not current when it was written."""
    with open(jobs_csv, newline="") as f:
        jobs = list(csv.DictReader(f))
    ran = [j for j in jobs if j["commit"]]
    if not ran:
        return "No job of the pipeline has run yet.\n"
    commits = list(dict.fromkeys(j["commit"] for j in sorted(ran, key=lambda j: j["finished"])))
    speeds = sorted(float(j["machine_s_per_epoch"]) for j in ran)
    finished = sorted(j["finished"] for j in ran)
    text = (f"The tables and figures of results/ come from the {len(ran)} jobs of dvc.yaml that have run "
            f"(results/jobs.md lists each), at {len(commits)} commits from {commits[0]} to {commits[-1]}, on "
            f"machines that train the standard CNN at {speeds[0]:g} to {speeds[-1]:g} s/epoch, finished between "
            f"{finished[0]} and {finished[-1]}. " + compute(jobs, speeds[0], speeds[-1]))
    behind = {state: [j["job"] for j in jobs if j["state"] == state] for state in ("stale", "never run")}
    if not any(behind.values()):
        return text + "When this page was written every job was current (`make status` tells today's state).\n"
    return text + "When this page was written, " + "; ".join(
        f"{len(names)} {'were' if len(names) > 1 else 'was'} {state} ({by_stage(names)})"
        for state, names in behind.items() if names) + \
        ": the tables they feed still hold an earlier run's figures or none (`make status` tells today's state).\n"


def compute(jobs, fastest, slowest):
    """The run's compute on two cores: the jobs' epochs of the standard CNN (minutes x 60
    / their machine's s/epoch) summed, in hours at the fastest and the slowest machine's
    speed, and the estimate of the jobs not run ('none yet' for some: left out)."""
    def hours(epochs, speed):
        return f"{epochs * speed / 3600:,.1f} h at {speed:g} s/epoch"

    spent = sum(float(j["epochs"]) for j in jobs if j["commit"])
    unrun = [j for j in jobs if not j["commit"]]
    estimates = [float(j["estimate_epochs"]) for j in unrun if j["estimate_epochs"].replace(".", "", 1).isdigit()]
    text = (f"Their compute sums to {spent:,.0f} epochs of the standard CNN, on two cores {hours(spent, fastest)}"
            + (f" or {hours(spent, slowest)}" if slowest != fastest else ""))
    if unrun:
        text += (f"; the {len(unrun)} jobs not run are estimated at {sum(estimates):,.0f} epochs more"
                 + (f" ({len(unrun) - len(estimates)} without an estimate)" if len(estimates) < len(unrun) else ""))
    return text + ". "


def by_stage(names):
    """Jobs named by their stage: 'mia-own (16), publish'."""
    counts = collections.Counter(name.split("@")[0] for name in names)
    return ", ".join(stage if n == 1 and stage in names else f"{stage} ({n})" for stage, n in counts.items())


def publish(results_dir):
    """provenance.md, summary.md and the digest (findings, headline, compact Table 4,
    README.md) of a results folder, from its tables."""
    jobs_csv = results_dir / "jobs.csv"
    atomic_write_text(results_dir / "provenance.md", "# Which jobs made these results\n\n" +
                      (provenance(jobs_csv) if jobs_csv.exists() else "No job table (results/jobs.csv) yet.\n"))
    write_summary(results_dir)
    write_digest(results_dir)


def main():
    parser = argparse.ArgumentParser(description="Write the digest of a results folder (summary, findings, "
                                     "headline, compact Table 4, every table, provenance) from its tables.")
    parser.add_argument("results_dir", nargs="?", type=Path, default=ROOT / "results",
                        help="the results folder (default: results/ of the repository)")
    results_dir = parser.parse_args().results_dir
    if not results_dir.is_dir():
        sys.exit(f"error: no results folder {results_dir}")
    try:
        publish(results_dir)
    except (KeyError, ValueError, IndexError) as error:   # a table an older run wrote, or one cut short
        sys.exit(f"error: a table in {results_dir} is not as today's code writes it ({type(error).__name__}: "
                 f"{error}); run the job that writes it again (make status names the stale ones)")
    print(f"wrote {results_dir}/provenance.md, summary.md, findings.md, headline.md, table4_compact.md, README.md")


if __name__ == "__main__":
    main()
