"""python -m bench [engine|firstrun|service|api|throughput|dashboard|predict|packed|sweeps|space|scale|all ...] [--quick] [--out PATH] [--threads N]"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

import torch

from bench import engine
from bench.report import Report

SECTIONS = ("engine", "firstrun", "service", "api", "throughput", "dashboard", "predict", "packed", "sweeps", "http", "space", "scale")
DEFAULT_OUT = Path(__file__).parent / "results" / "latest.json"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench", description="netfit benchmarks; every goal is printed PASS or MISS")
    parser.add_argument("sections", nargs="*", metavar="SECTION", help=f"{', '.join(SECTIONS)} or all (default: all)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: small data, one round, few jobs")
    parser.add_argument("--rounds", type=int, help="engine: timed rounds after one warm-up round (default 5); packed: rounds (default 3)")
    parser.add_argument("--contenders", nargs="+", choices=list(engine.CONTENDERS), help="engine: default all")
    parser.add_argument("--threads", type=int, help="torch CPU threads for every contender and service process (default: torch's)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON summary (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    chosen = list(SECTIONS) if not args.sections or "all" in args.sections else args.sections
    unknown = [name for name in chosen if name not in SECTIONS]
    if unknown:
        parser.error(f"unknown section {', '.join(unknown)}; choose from {', '.join(SECTIONS)} or all")
    if args.threads:
        torch.set_num_threads(args.threads)

    # a kill runs the same clean-up as Ctrl-C: the service processes stop, the database is dropped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = Report()
    began = time.monotonic()
    if "engine" in chosen:
        engine.run(report, quick=args.quick, rounds=args.rounds, names=args.contenders)
    if "firstrun" in chosen:  # a fresh clone's `make run`, then a second one (bench/firstrun.py)
        from bench import firstrun

        firstrun.run(report)
    services = [name for name in chosen if name not in ("engine", "firstrun", "dashboard", "predict", "packed", "sweeps", "http",
                                                        "space", "scale")]
    if services:
        from bench import services as service_benchmarks

        service_benchmarks.run(report, services, quick=args.quick, threads=args.threads)
    if "dashboard" in chosen:  # Chromium against an embedded service (bench/dashboard.py)
        from bench import dashboard

        dashboard.run(report, quick=args.quick)
    if "http" in chosen:  # API requests/s and p50/p99 from wrk, a separate process (bench/http.py)
        from bench import http

        http.run(report, quick=args.quick)
    if "predict" in chosen:  # /predict latency, batch rows/s vs onnxruntime (bench/predict.py)
        from bench import predict

        predict.run(report, quick=args.quick, threads=args.threads)
    if "packed" in chosen:  # a sweep of small nets, packed vs one trial at a time (bench/packed.py)
        from bench import packed

        packed.run(report, quick=args.quick, rounds=args.rounds)
    if "sweeps" in chosen:  # scheduler overhead of a sweep, TPE's ask at 1,000 trials (bench/sweeps.py)
        from bench import sweeps

        sweeps.run(report, quick=args.quick, threads=args.threads)
    if "space" in chosen:  # a big model's bytes on disk per byte kept, SQLite and PostgreSQL (bench/space.py)
        from bench import space

        space.run(report, quick=args.quick)
    if "scale" in chosen:  # simulated workers' claims, flushes and fair share on PostgreSQL (bench/scale.py)
        from bench import scale

        scale.run(report, quick=args.quick)
    report.summary()
    print(f"\n({time.monotonic() - began:.0f} s)")
    report.write(args.out, argv)


if __name__ == "__main__":
    main()
