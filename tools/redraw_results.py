"""Every table's Markdown rendered again, every figure redrawn and the digest of a
results folder (tools/publish.py: findings.md, headline.md, summary.md, provenance.md and
README.md) regenerated from its CSVs and logs, running nothing (what `make readme` does
before it updates the README).

    python tools/redraw_results.py [results]
"""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from publish import publish  # noqa: E402  (tools/ is the script's folder)

from fashion_defenses.experiments.redraw import recheck_certificates, redraw_figures  # noqa: E402
from fashion_defenses.reporting import rerender_markdown  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description="Re-render every table, redraw the evaluation figures and "
                                     "regenerate findings.md and README.md of a results folder, running nothing.")
    parser.add_argument("results_dir", nargs="?", type=Path, default=ROOT / "results",
                        help="the results folder (default: results/ of the repository)")
    results_dir = parser.parse_args().results_dir
    if not results_dir.is_dir():
        sys.exit(f"error: no results folder {results_dir}")
    try:
        recheck_certificates(results_dir)
        rerender_markdown(results_dir)
        redraw_figures(results_dir)
        publish(results_dir)
    except (KeyError, ValueError, IndexError) as error:   # a table cut short or edited by hand
        sys.exit(f"error: a table in {results_dir} is not as a run writes it ({type(error).__name__}: {error}); "
                 "run the stage that writes it again")


if __name__ == "__main__":
    main()
