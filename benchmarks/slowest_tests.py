"""The test suite's slowest tests, from the JUnit XML that `make test-record` has pytest
write: benchmarks/results/slowest_tests.{csv,md}, each test's seconds (setup, call and
teardown; a session-wide quick run is paid by the first test that asks for it), beside
the machine's speed (benchmarks/results/machine_speed.csv).

    python benchmarks/slowest_tests.py benchmarks/results/suite.xml [--top 10]
"""
import argparse
import csv
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fashion_defenses.reporting import write_table  # noqa: E402


def slowest(junit_xml, top):
    """(test id, seconds) of the top slowest test cases of a JUnit XML report, slowest first."""
    cases = ElementTree.parse(junit_xml).getroot().iter("testcase")
    timed = [(f"{case.get('classname')}::{case.get('name')}", float(case.get("time", 0))) for case in cases]
    return sorted(timed, key=lambda item: -item[1])[:top], sum(seconds for _, seconds in timed), len(timed)


def main():
    parser = argparse.ArgumentParser(description="The suite's slowest tests from pytest's JUnit XML.")
    parser.add_argument("junit_xml", type=Path, help="the report pytest wrote (--junitxml)")
    parser.add_argument("--top", type=int, default=10, help="how many tests to list (default 10)")
    args = parser.parse_args()
    if not args.junit_xml.is_file():
        sys.exit(f"error: no such file {args.junit_xml}")
    try:
        tests, total, count = slowest(args.junit_xml, args.top)
    except ElementTree.ParseError as error:
        sys.exit(f"error: {args.junit_xml} is no JUnit XML report ({error})")
    speed_csv = ROOT / "benchmarks" / "results" / "machine_speed.csv"
    speed = next(csv.DictReader(open(speed_csv)))["seconds_per_epoch"] if speed_csv.exists() else "unknown"
    write_table([{"test": name, "seconds": round(seconds, 1)} for name, seconds in tests],
                ROOT / "benchmarks" / "results" / "slowest_tests",
                title=f"The {len(tests)} slowest of {count} tests ({total / 60:.1f} minutes of test time over both "
                      f"workers) on a machine at {speed} s/epoch (make test-record)")
    print(f"wrote benchmarks/results/slowest_tests.md ({len(tests)} of {count} tests)")


if __name__ == "__main__":
    main()
