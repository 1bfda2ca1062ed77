"""Does a new run reproduce an earlier one? Compares two results folders and writes
<new>/reproducibility.md (and .csv):

- every accuracy measured in both (a row of the same table with the same settings, other
  than the figures): both values, their difference, and whether the new value lies in the
  earlier one's exact 95% interval;
- table by table, how many accuracies only one of the runs measured (a measurement the
  evaluation added, dropped or set differently);
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
LOG_COLUMNS = {"idx", "predict", "radius"}   # what the certification logs are compared by
# columns that change from run to run without the measurement changing
CIRCUMSTANCES = {"seconds_per_epoch", "mean_seconds_per_image", "seconds", "samples_per_s", "images_per_s",
                 "vs_ours", "vs_limit", "epochs_run", "abstain_rate", "study_within_ci", "time"}


def read(path, delimiter=","):
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter=delimiter))


def accuracy_tables(folder):
    """{table name: its rows} of every table in folder that measures an accuracy."""
    tables = {}
    for path in sorted(Path(folder).glob("*.csv")):
        rows = read(path)
        if rows and FIGURES <= set(rows[0]):
            tables[path.stem] = [r for r in rows if r["acc"] != ""]
    return tables


def settings(row):
    """What a row measured: its columns other than the figures and the circumstances."""
    return tuple((k, v) for k, v in row.items() if k not in FIGURES | CIRCUMSTANCES)


def compare_accuracies(old_dir, new_dir):
    """(every accuracy both runs measured with the same settings, and per table how many
    were measured in both, within the earlier interval, only now and only earlier)."""
    old_tables, new_tables = accuracy_tables(old_dir), accuracy_tables(new_dir)
    pairs, per_table = [], []
    for table in sorted(set(old_tables) | set(new_tables)):
        earlier = {settings(r): r for r in old_tables.get(table, [])}
        now = {settings(r): r for r in new_tables.get(table, [])}
        matched = []
        for key in [key for key in now if key in earlier]:
            o, r = earlier[key], now[key]
            try:
                old_acc, new_acc, low, high = float(o["acc"]), float(r["acc"]), float(o["ci_low"]), float(o["ci_high"])
            except ValueError:
                raise ValueError(f"{table}.csv: a figure that is no number in {o} or {r}") from None
            described = ", ".join(v for k, v in key if k not in ("protocol", "n", "seed", "settings") and v)
            matched.append({"table": table, "measurement": described, "n": r.get("n", ""),
                            "earlier_%": round(100 * old_acc, 2), "now_%": round(100 * new_acc, 2),
                            "difference_points": round(100 * (new_acc - old_acc), 2),
                            "within_earlier_interval": low <= new_acc <= high})
        pairs += matched
        per_table.append({"table": table, "in_both": len(matched),
                          "within_earlier_interval": sum(m["within_earlier_interval"] for m in matched),
                          "only_now": len(now) - len(matched), "only_earlier": len(earlier) - len(matched)})
    return pairs, per_table


def certification_rows(old_dir, new_dir):
    """Per certification log in both: images in both, same prediction, radius shift."""
    out = []
    for new_path in sorted((Path(new_dir) / "certify").glob("*.tsv")):
        old_path = Path(old_dir) / "certify" / new_path.name
        if not old_path.exists():
            continue
        logs = [read(p, delimiter="\t") for p in (old_path, new_path)]
        if any(rows and not LOG_COLUMNS <= set(rows[0]) for rows in logs):
            raise ValueError(f"certify/{new_path.name}: a log without the columns {', '.join(sorted(LOG_COLUMNS))}")
        old, new = ({r["idx"]: r for r in rows} for rows in logs)
        try:
            common = sorted(set(old) & set(new), key=int)
        except ValueError:
            raise ValueError(f"certify/{new_path.name}: an image index that is no integer") from None
        if not common:
            continue
        same = sum(old[i]["predict"] == new[i]["predict"] for i in common)
        try:
            shifts = [abs(float(old[i]["radius"]) - float(new[i]["radius"])) for i in common
                      if old[i]["predict"] == new[i]["predict"] != "-1"]
        except (TypeError, ValueError):   # TypeError: a row cut short, so no radius at all
            raise ValueError(f"certify/{new_path.name}: a radius that is no number in one of the two runs") from None
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
    try:
        accuracies, per_table = compare_accuracies(old_dir, new_dir)
        certificates = certification_rows(old_dir, new_dir)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not accuracies and not certificates:
        print(f"error: {old_dir} and {new_dir} share no measurement", file=sys.stderr)
        return 1
    inside = sum(r["within_earlier_interval"] for r in accuracies)
    tables = ["Table by table: accuracies measured in both runs (of them, within the earlier interval), and "
              "measured by one run only (a measurement added, dropped or set differently):", ""] + [
        f"- {t['table']}: {t['in_both']} in both ({t['within_earlier_interval']} within), {t['only_now']} only now, "
        f"{t['only_earlier']} only earlier" for t in per_table]
    logs = ["Certification logs, image by image:", ""] + [
        f"- {c['log']}: {c['same_prediction']} of {c['images']} images get the same prediction "
        f"({c['same_prediction_%']}%); certified radii moved by {c['median_radius_shift']} (median), "
        f"{c['largest_radius_shift']} at most" for c in certificates]
    write_table(accuracies, new_dir / "reproducibility",
                title=f"This run against the earlier results in {old_dir}: every accuracy both measured with the "
                      f"same settings; {inside} of {len(accuracies)} lie in the earlier exact 95% interval",
                note="\n".join(tables + ([""] + logs if certificates else [])))
    print(f"wrote {new_dir / 'reproducibility.md'}: {inside} of {len(accuracies)} accuracies within the earlier "
          f"interval; {len(certificates)} certification logs compared")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
