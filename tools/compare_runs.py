"""Does a new run reproduce an earlier one? Compares two results folders and writes
<new>/reproducibility.md (and .csv):

- every accuracy measured in both (a row of the same table with the same settings, other
  than the figures): both values, their difference, and whether the new value lies in the
  earlier one's exact 95% interval;
- the certification logs (certify/*.tsv) of both: per image, the same prediction (or
  abstention) and how far the certified radii moved.

    python tools/compare_runs.py OLD_RESULTS NEW_RESULTS
"""
import csv
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fashion_defenses.reporting import write_table

FIGURES = {"acc", "ci_low", "ci_high"}
# columns that change from run to run without the measurement changing
CIRCUMSTANCES = {"seconds_per_epoch", "mean_seconds_per_image", "seconds", "samples_per_s", "images_per_s",
                 "vs_ours", "vs_limit", "epochs_run", "abstain_rate", "study_within_ci", "time"}


def read(path, delimiter=","):
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter=delimiter))


def accuracy_rows(old_dir, new_dir):
    """Rows of every table in both folders that measure an accuracy with the same settings."""
    out = []
    for new_path in sorted(Path(new_dir).glob("*.csv")):
        old_path = Path(old_dir) / new_path.name
        if not old_path.exists():
            continue
        old_rows, new_rows = read(old_path), read(new_path)
        if not new_rows or not FIGURES <= set(new_rows[0]):
            continue
        key_of = lambda r: tuple((k, v) for k, v in r.items() if k not in FIGURES | CIRCUMSTANCES)  # noqa: E731
        earlier = {key_of(r): r for r in old_rows}
        for r in new_rows:
            o = earlier.get(key_of(r))
            if o is None or "" in (o["acc"], r["acc"]):
                continue
            old_acc, new_acc = float(o["acc"]), float(r["acc"])
            described = ", ".join(v for k, v in key_of(r) if k not in ("protocol", "n", "seed", "settings") and v)
            out.append({"table": new_path.stem, "measurement": described, "n": r.get("n", ""),
                        "earlier_%": round(100 * old_acc, 2), "now_%": round(100 * new_acc, 2),
                        "difference_points": round(100 * (new_acc - old_acc), 2),
                        "within_earlier_interval": float(o["ci_low"]) <= new_acc <= float(o["ci_high"])})
    return out


def certification_rows(old_dir, new_dir):
    """Per certification log in both: images in both, same prediction, radius shift."""
    out = []
    for new_path in sorted((Path(new_dir) / "certify").glob("*.tsv")):
        old_path = Path(old_dir) / "certify" / new_path.name
        if not old_path.exists():
            continue
        old, new = ({r["idx"]: r for r in read(p, delimiter="\t")} for p in (old_path, new_path))
        common = sorted(set(old) & set(new), key=int)
        if not common:
            continue
        same = sum(old[i]["predict"] == new[i]["predict"] for i in common)
        shifts = [abs(float(old[i]["radius"]) - float(new[i]["radius"])) for i in common
                  if old[i]["predict"] == new[i]["predict"] != "-1"]
        out.append({"log": new_path.stem, "images": len(common), "same_prediction": same,
                    "same_prediction_%": round(100 * same / len(common), 1),
                    "median_radius_shift": round(statistics.median(shifts), 4) if shifts else "",
                    "largest_radius_shift": round(max(shifts), 4) if shifts else ""})
    return out


def main(argv):
    if len(argv) != 2 or not all(Path(a).is_dir() for a in argv):
        print("usage: python tools/compare_runs.py OLD_RESULTS NEW_RESULTS (two folders)", file=sys.stderr)
        return 2
    old_dir, new_dir = map(Path, argv)
    accuracies, certificates = accuracy_rows(old_dir, new_dir), certification_rows(old_dir, new_dir)
    if not accuracies and not certificates:
        print(f"error: {old_dir} and {new_dir} share no measurement", file=sys.stderr)
        return 1
    inside = sum(r["within_earlier_interval"] for r in accuracies)
    write_table(accuracies, new_dir / "reproducibility",
                title=f"This run against the earlier results in {old_dir}: every accuracy both measured with the "
                      f"same settings; {inside} of {len(accuracies)} lie in the earlier exact 95% interval",
                note="Certification logs, image by image:\n\n" + "\n".join(
                    f"- {c['log']}: {c['same_prediction']} of {c['images']} images get the same prediction "
                    f"({c['same_prediction_%']}%); certified radii moved by {c['median_radius_shift']} (median), "
                    f"{c['largest_radius_shift']} at most" for c in certificates) if certificates else None)
    print(f"wrote {new_dir / 'reproducibility.md'}: {inside} of {len(accuracies)} accuracies within the earlier "
          f"interval; {len(certificates)} certification logs compared")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
