"""Print the benchmark figures as JSON: ``python benchmarks/bench.py [--device cpu|cuda] [--quick]``.

The same as ``python -m pruning bench --json``; see ``pruning.bench`` for what each figure means.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pruning.bench import run_benchmark  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cpu, plus cuda if present)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (noisier)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads for the run (default: torch's own choice)")
    args = parser.parse_args()
    print(json.dumps(run_benchmark(args.device, quick=args.quick, threads=args.threads), indent=2))


if __name__ == "__main__":
    main()
