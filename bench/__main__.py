"""python -m bench [SUITE ...] [--rounds N] [--batch-sizes 64 256] [--threads N] [--save]"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bench import engine

SUITES = {"engine": engine}
RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description="netfit benchmarks")
    parser.add_argument("suites", nargs="*", metavar="SUITE", help=f"one of {', '.join(SUITES)}; default: all")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds after one warm-up round")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--contenders", nargs="+", choices=list(engine.CONTENDERS), help="default: all")
    parser.add_argument("--save", action="store_true", help="also write JSON to bench/results/SUITE.json")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's); 1 is steadier on a busy machine")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    unknown = [name for name in args.suites if name not in SUITES]
    if unknown:
        parser.error(f"unknown suite {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    for name in args.suites or list(SUITES):
        SUITES[name].run(args.batch_sizes, args.rounds, args.contenders,
                         save=RESULTS / f"{name}.json" if args.save else None)


if __name__ == "__main__":
    main()
