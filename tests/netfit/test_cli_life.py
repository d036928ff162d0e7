"""`netfit follow` tells a job's life on the cluster, one readable line per event, from a real
job's event stream (`netfit api` on PostgreSQL + Redis, real worker processes): it waited for a
worker, its worker was killed (kill -9) and it was taken back, it resumed from its saved epoch
on the other worker and finished."""

from __future__ import annotations

import re
import signal

import httpx
import pytest

from netfit import Client
from tests.conftest import FAST, iris_spec, service_env, wait_ready, wait_until
from tests.netfit.conftest import netfit

pytestmark = [pytest.mark.slow]


def test_follow_prints_waiting_lost_and_resumed_as_one_line_each(pg_url, redis_url, start_api, start_worker):
    # the resume state at every epoch: the second attempt goes on from the epoch the first reached
    env = service_env(pg_url, redis_url, **FAST, NETFIT_CHECKPOINT_SECONDS="0")
    base_url = start_api(env)
    wait_until(lambda: httpx.get(f"{base_url}/readyz", timeout=10).status_code == 200, timeout=90, interval=0.5,
               what="/readyz (the API's warm-up)")
    with Client(base_url, timeout=90) as client:
        # no worker yet: it waits, and says why. 60 epochs: on one torch thread an Iris epoch can
        # take 30 ms, and 12 ended before the test could find the worker training it
        job = client.submit(iris_spec(epochs=60, batch_size=4))
        workers = [start_worker(env, wait=False) for _ in range(2)]
        for worker in workers:
            wait_ready(worker)
        wait_until(lambda: client.job(job.id).epochs_completed >= 3, timeout=60, interval=0.02, what="three epochs")
        [busy] = wait_until(lambda: [w.pid for w in client.workers() if any(j.id == job.id for j in w.jobs)],
                            timeout=30, interval=0.02, what="the worker training the job in GET /v1/workers")
        next(w for w in workers if w.pid == busy).signal(signal.SIGKILL)
        print(f"killed worker {busy} at epoch {client.job(job.id).epochs_completed}")
        done = client.wait(job.id, timeout=120)
    assert done.status == "succeeded" and done.attempts == 2, done

    result = netfit("follow", job.id, url=base_url)
    assert result.returncode == 0, result.stderr
    print(result.stdout)
    lines = [line for line in result.stdout.splitlines() if not line.startswith("epoch")]
    assert lines[:3] == ["queued", "waiting: no live worker serves queue 'cpu'; start one (netfit worker --queues cpu)",
                         "running"], lines
    lost = next(line for line in lines if line.startswith("lost"))
    taken_at = int(re.fullmatch(r"lost: the worker stopped beating; taken back after epoch (\d+)", lost).group(1))
    assert taken_at >= 3
    after = lines[lines.index(lost) + 1:]
    assert after[0] == "running again (attempt 2)", lines
    resumed = re.fullmatch(r"resumed from epoch (\d+)(?: \(\d+ epochs? after it train again\))?", after[1])
    assert resumed and 1 <= int(resumed.group(1)) <= taken_at, lines
    assert after[-1].startswith("succeeded · stopped by max_epochs after 60 epochs"), lines


def test_a_preemption_reads_as_one_line_naming_the_job_that_took_its_place():
    # (no real preemption here: its stream event as the server sends it)
    from netfit.sse import LifeEvent, job_event, parse_sse

    [event, hidden] = [job_event(e) for e in parse_sse([
        "id: 40", "event: preempted", 'data: {"by": "abc", "after_epoch": 7}', "",
        "id: 41", "event: preempted", 'data: {"by": null, "after_epoch": 0}', ""])]
    assert isinstance(event, LifeEvent) and event.kind == "preempted" and event.id == "40"
    assert str(event) == "preempted by job abc after epoch 7; it waits to resume"
    assert str(hidden) == "preempted by another team's job before its first epoch ended; it waits to resume"
