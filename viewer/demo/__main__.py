"""`python -m viewer.demo OUT [--preset small] [--visits 3] [--seed 0]`."""

from __future__ import annotations

import argparse
import sys
import time

from viewer.demo.generate import generate_demo
from viewer.demo.grid import PRESETS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m viewer.demo",
                                     description="Write synthetic longitudinal chest CT studies.")
    parser.add_argument("out", help="output folder (created if missing)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    parser.add_argument("--visits", type=int, default=3, choices=(1, 2, 3))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    def progress(done: int, total: int, message: str) -> None:
        print(f"\r[{done}/{total}] {message}".ljust(70), end="", file=sys.stderr, flush=True)

    start = time.perf_counter()
    result = generate_demo(args.out, preset=args.preset, n_visits=args.visits, seed=args.seed,
                           progress=progress)
    print(f"\ndone in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    for visit in result.visits:
        print(f"{visit.date}  {visit.study_dir}  ({visit.n_files} files)")
    print(f"ground truth: {result.ground_truth_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
