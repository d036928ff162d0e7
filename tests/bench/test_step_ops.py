"""python -m bench.step_ops: the engine's step runs the hand loop's ops (issue 16 §5), counted by torch.profiler."""

from __future__ import annotations

import re

from bench import step_ops


def test_engine_and_hand_loop_steps_run_about_the_same_ops(capsys) -> None:
    step_ops.main(["--samples", "640"])
    out = capsys.readouterr().out
    engine, hand = map(float, re.search(r"engine fit\(\)\s+([\d.]+)\s+hand loop\s+([\d.]+)", out).groups())
    assert hand > 50  # forward, loss, backward, Adam and the metric sums of a real step
    # per step the same ops; the engine's set-up (checks, model init: ~23 per step over these 10 steps) adds some
    assert hand <= engine <= hand + 40, out
