"""Print the app's responsiveness figures as JSON: ``python benchmarks/app_bench.py [--runs N]
[--pages N]``.

The same as ``python -m pruning bench --app --json``: ``streamlit run app.py`` with a scratch
store of generated runs, driven by Playwright and the system Chromium; see ``pruning.app_bench``
for what each figure means.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pruning.app_bench import run_app_benchmark  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1000, help="generated runs in the store")
    parser.add_argument("--pages", type=int, default=None, help="only the first N pages")
    args = parser.parse_args()
    print(json.dumps(run_app_benchmark(runs=args.runs, pages=args.pages), indent=2))


if __name__ == "__main__":
    main()
