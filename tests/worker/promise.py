"""The recovery promise of DESIGN §5, checked after a worker was lost mid-job: the resumed attempt
trained again at most max(one epoch, NETFIT_CHECKPOINT_SECONDS) of what the lost one had done."""

from __future__ import annotations

import re


def assert_recomputed_within(log: str, job_id: str, epoch_seconds: dict[int, float], checkpoint_seconds: float) -> int:
    """log: the resuming worker's output; epoch_seconds: the job's rows (epoch -> seconds) once it
    finished. Returns the epoch the job resumed after. The epochs trained again are those the lost
    attempt had recorded after its saved state (the worker logs how many it dropped); the promise is
    exact for epochs of even length, so one epoch more is allowed on a shared machine."""
    found = re.search(rf"job {job_id}: resuming after epoch (\d+) \((\d+) later epochs", log)
    assert found, f"the resuming worker did not log where it resumed:\n{log[-2000:]}"
    after, dropped = int(found[1]), int(found[2])
    redone = sum(epoch_seconds[e] for e in range(after + 1, after + dropped + 1))
    longest = max(epoch_seconds.values())
    assert redone <= checkpoint_seconds + longest, (
        f"resumed after epoch {after}: {dropped} epochs ({redone:.2f} s of training) done again, more than "
        f"max(one epoch, {checkpoint_seconds} s) allows")
    return after
