"""Op counts of one training epoch, engine fit() vs the hand loop (issue 16 §5): which aten ops
(and how many per step) the engine runs that the hand-optimized loop does not.

python -m bench.step_ops [--batch 64] [--samples 6400]

The counts come from torch.profiler over one epoch after a warm-up epoch; "per step" divides by
the number of batches, so the engine's once-per-call set-up (model init, checks) shows as a
fraction of an op. Measured on torch 2.13, MLP 784-128-10 at batch 64: engine 138.1 aten ops per
step (139.1 before the metric sums stopped detaching the logits), hand loop 135.8: the rest is
set-up; per step the two run the same ops.
"""

from __future__ import annotations

import argparse
import collections

import torch
from torch.profiler import ProfilerActivity, profile

from bench import engine as bench_engine


def op_counts(epoch) -> collections.Counter:
    epoch()  # warm-up: the first call allocates and picks kernels
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        epoch()
    return collections.Counter(e.name for e in prof.events() if e.name.startswith("aten::"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.step_ops", description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--samples", type=int, default=6400, help="training samples (validation: a tenth)")
    args = parser.parse_args(argv)
    data = bench_engine.make_data(args.samples, args.samples // 10)
    setup = bench_engine.Setup((128,), 0.0, args.batch)
    steps = -(-args.samples // args.batch)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the counts do not depend on it; a loaded machine's noise does
    try:
        engine = op_counts(bench_engine.engine(data, setup))
        hand = op_counts(bench_engine.hand_fused(data, setup))
    finally:
        torch.set_num_threads(threads)
    print(f"{setup.label}: aten ops per step (over one epoch of {steps} steps)")
    print(f"  engine fit() {sum(engine.values()) / steps:7.1f}   hand loop {sum(hand.values()) / steps:7.1f}")
    for name in sorted(set(engine) | set(hand), key=lambda k: hand[k] - engine[k]):
        if engine[name] != hand[name]:
            print(f"  {name:<40} engine {engine[name] / steps:7.2f}   hand {hand[name] / steps:7.2f}")


if __name__ == "__main__":
    main()
