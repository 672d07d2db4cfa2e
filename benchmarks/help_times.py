"""Wall time of `--help` for every command of a checkout, and its exit status: the median of --runs.

    python benchmarks/help_times.py                        # this checkout
    python benchmarks/help_times.py --tree ../old-checkout # another one, for a before/after table

Runs `python TREE/tools/NAME.py --help` with TREE first on PYTHONPATH, for each program in TREE/tools.
"""

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tree", default=str(pathlib.Path(__file__).resolve().parents[1]))
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    tree = pathlib.Path(args.tree).resolve()
    env = {**os.environ, "PYTHONPATH": str(tree)}
    for tool in sorted((tree / "tools").glob("*.py")):
        seconds, status = [], None
        for _ in range(args.runs):
            start = time.perf_counter()
            status = subprocess.run([sys.executable, str(tool), "--help"], capture_output=True, env=env).returncode
            seconds.append(time.perf_counter() - start)
        print(f"| {tool.stem} | {statistics.median(seconds):.2f} s (exit {status}) |", flush=True)


if __name__ == "__main__":
    main()
