"""Sweeps' own costs (issue 12), on Redis + PostgreSQL with two workers.

scheduler overhead  a 40-trial random sweep of ~1-second Iris trials, max_concurrent 2 (one
                    trial per worker, so every ask, send and pick-up sits between two trials):
                    wall time (POST sent -> the sweep's finished_at) / (the sum of the trials'
                    run times (started_at -> finished_at, as the worker stamped them) / 2).
                    Goal <= 1.15 (Ray Tune publishes 14% for 1-s trials). The trial length is
                    calibrated first: one Iris job's seconds per epoch on this machine, now.
TPE ask cost        one ask as a worker makes it when its trial has ended, inside its whole step
                    (service.sweeps.controller._step): every trial's state read, the process's study brought
                    up to date, TPE's ask (goal <= 50 ms at 16 parameters; also at 3), on a sweep
                    holding 1,000 completed trials of 10 epochs, 2 at a time. Printed apart: the
                    whole step (with the sweep's read and the trial's job row written), and the
                    process's first ask on the sweep, which reads every trial's params and curve.
                    Beside it, in the same run, Optuna's own ask on a fresh in-memory study of
                    the same trials (no database); Optuna publishes ~37 ms per trial at 16
                    parameters.
packed ask          a packing sweep's first fill (service.sweeps.fill, as the API runs it at POST):
                    every trial of a 32- and a 128-trial sweep asked, written and sent before the
                    first message starts the pack; ms in all and per trial, and its commits (one:
                    the trials are asked in one transaction).
"""

from __future__ import annotations

import math
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bench import stacks
from bench.report import Report
from bench.services import stamp, submit, wait_done
from tests.conftest import fresh_pg_database, iris_spec, wait_until

ms = 1000.0
OPTUNA_PUBLISHED_MS = 37.0  # TPE, 16 parameters, 1,000 trials (Optuna's own benchmark)


def _trial_seconds(job: dict[str, Any]) -> float:
    return stamp(job["finished_at"]) - stamp(job["started_at"])


def _round(stack: stacks.Stack, epochs: int) -> float:
    """The median seconds of an Iris job of `epochs` epochs while every worker runs one, as in the sweep."""
    ids = [submit(stack.client, iris_spec(epochs=epochs, batch_size=16, seed=i))[0] for i in range(stack.workers)]
    return statistics.median(_trial_seconds(wait_done(stack.client, job_id)) for job_id in ids)


def _trial_epochs(stack: stacks.Stack, target: float, short: int = 10, long: int = 40) -> tuple[int, float]:
    """How many epochs make a `target`-second trial here, now, and what a round of them took:
    a warm-up round, rounds of `short` and `long` epochs (a job's fixed cost and the cost per
    epoch), then a round at the estimate, scaled once (the machine's load moves)."""
    _round(stack, short)
    first, second = _round(stack, short), _round(stack, long)
    per_epoch = max(1e-3, (second - first) / (long - short))
    epochs = max(2, round((target - max(0.0, first - short * per_epoch)) / per_epoch))
    measured = _round(stack, epochs)
    return max(2, round(epochs * target / measured)), measured


def overhead(report: Report, stack: stacks.Stack, quick: bool) -> None:
    if quick:  # a smoke run: a few short trials, no calibration
        n, epochs = 6, 3
    else:
        n, target = 40, 1.0
        epochs, measured = _trial_epochs(stack, target)
        report.note(f"  calibrated with both workers busy (the last round took {measured:.2f} s): trials of "
                    f"{epochs} Iris epochs, ~{target:g} s")
    body = {"name": "bench-overhead", "spec": iris_spec(epochs=epochs, batch_size=16),
            "parameters": {"model.layers.0.units": {"values": [8, 16, 32]},
                           "training.optimizer.lr": {"min": 0.001, "max": 0.1, "distribution": "log_uniform"}},
            "method": "random", "max_trials": n, "max_concurrent": stack.workers, "seed": 0}
    sent = time.time()
    response = stack.client.post("/v1/sweeps", json=body)
    if response.is_error:
        raise RuntimeError(f"POST /v1/sweeps: {response.status_code} {response.text}")
    sweep_id = response.json()["id"]
    sweep = wait_until(lambda: (s := stack.client.get(f"/v1/sweeps/{sweep_id}").json())["status"] != "running" and s,
                       timeout=60 + n * 10, interval=0.25, what="the sweep to end")
    if sweep["status"] != "succeeded":
        raise RuntimeError(f"the benchmark sweep ended {sweep['status']}: {sweep['error']}")
    trials = stack.client.get("/v1/jobs", params={"sweep": sweep_id, "limit": 200}).json()["items"]
    seconds = [_trial_seconds(job) for job in trials]
    wall = stamp(sweep["finished_at"]) - sent
    ideal = sum(seconds) / stack.workers
    report.note(f"  {len(trials)} trials, median {statistics.median(seconds):.2f} s each; POST to the sweep's end "
                f"{wall:.1f} s against {ideal:.1f} s of trials per worker")
    report.figure("scheduler_overhead", wall / ideal, "x", goal=("<=", 1.15),
                  label=f"scheduler overhead, {n} trials on {stack.workers} workers (wall / (trial time / workers))")


def _parameters(count: int) -> dict[str, dict[str, Any]]:
    """`count` parameters of the three kinds: integer widths, categorical activations, floats."""
    out: dict[str, dict[str, Any]] = {"training.optimizer.lr": {"min": 1e-4, "max": 0.1, "distribution": "log_uniform"},
                                      "training.optimizer.weight_decay": {"min": 0.0, "max": 0.01},
                                      "model.layers.0.units": {"min": 4, "max": 256, "distribution": "int_uniform"}}
    layer = 1
    while len(out) < count:
        out[f"model.layers.{2 * layer}.units"] = {"min": 4, "max": 256, "distribution": "int_uniform"}
        if len(out) < count:
            out[f"model.layers.{2 * layer + 1}.type"] = {"values": ["relu", "tanh", "gelu"]}
        layer += 1
    return dict(list(out.items())[:count])


def insert_completed_sweep(db_url: str, n_params: int, n_trials: int, epochs: int) -> str:
    """A TPE sweep with n_trials succeeded trials (random parameters, a val_loss curve each),
    written directly; returns its id."""
    from sqlalchemy import insert, text, update

    from db import sweeps as db_sweeps
    from db.models import EpochMetric, Job, Sweep, new_id
    from db.session import make_session_factory
    from netfit.sweep_spec import SweepSpec

    spec = iris_spec(epochs=epochs)  # deep enough for every path of _parameters(n_params)
    spec["model"]["layers"] = [{"type": t, **({"units": 16} if t == "linear" else {})}
                               for _ in range(8) for t in ("linear", "relu")] + [{"type": "linear", "units": 3}]
    request = SweepSpec.model_validate({"name": f"bench-ask-{n_params}", "spec": spec,
                                        "parameters": _parameters(n_params), "method": "tpe",
                                        "max_trials": n_trials, "max_concurrent": 2})
    stored = request.model_dump(mode="json") | {"max_trials": request.trials,
                                                "objective": {"metric": "val_loss", "mode": "min"}}
    rng = np.random.default_rng(n_params)
    factory = make_session_factory(db_url)
    with factory() as session:
        sweep = db_sweeps.create_sweep(session, tenant="bench", request=stored, method="tpe", metric="val_loss",
                                       mode="min", max_trials=request.trials, max_concurrent=2)
        now = datetime.now(timezone.utc)
        jobs, metrics = [], []
        for number in range(n_trials):
            params: dict[str, Any] = {}
            for path, p in request.parameters.items():
                if p.values is not None:
                    params[path] = p.values[int(rng.integers(len(p.values)))]
                elif p.kind == "int_uniform":
                    params[path] = int(rng.integers(int(p.min), int(p.max) + 1))
                elif p.kind == "log_uniform":
                    params[path] = float(np.exp(rng.uniform(np.log(p.min), np.log(p.max))))
                else:
                    params[path] = float(rng.uniform(p.min, p.max))
            job_id = new_id()
            jobs.append({"id": job_id, "tenant": "bench", "name": f"bench-ask #{number}", "spec": request.spec,
                         "epochs": epochs, "epochs_completed": epochs, "queue": "cpu", "status": "succeeded",
                         "stop_reason": "max_epochs", "attempts": 1, "sweep_id": sweep.id, "trial_number": number,
                         "params": params, "created_at": now - timedelta(seconds=n_trials - number),
                         "updated_at": now, "finished_at": now - timedelta(seconds=n_trials - number)})
            final = abs(np.log10(params["training.optimizer.lr"]) + 2) + rng.uniform(0, 0.2)
            metrics += [{"job_id": job_id, "epoch": e, "train_loss": final + 1 / e, "val_loss": final + 1.1 / e,
                         "lr": params["training.optimizer.lr"], "seconds": 0.01} for e in range(1, epochs + 1)]
        session.execute(insert(Job), jobs)
        session.execute(insert(EpochMetric), metrics)
        session.execute(update(Sweep).where(Sweep.id == sweep.id).values(trials_asked=n_trials))
        session.commit()
        session.execute(text("ANALYZE jobs, epoch_metrics"))  # as autovacuum soon would
        session.commit()
    factory.kw["bind"].dispose()
    return sweep.id


def _end_trial(session: Any, job_id: str, epochs: int, lr: float) -> None:
    """What a worker's finish() leaves of a trial: its epochs' rows, the job succeeded."""
    from sqlalchemy import insert, update

    from db.models import EpochMetric, Job, utcnow

    final = abs(math.log10(lr) + 2)
    session.execute(insert(EpochMetric), [{"job_id": job_id, "epoch": e, "train_loss": final + 1 / e,
                                           "val_loss": final + 1.1 / e, "lr": lr, "seconds": 0.01}
                                          for e in range(1, epochs + 1)])
    session.execute(update(Job).where(Job.id == job_id).values(
        status="succeeded", stop_reason="max_epochs", epochs_completed=epochs, finished_at=utcnow()))
    session.commit()


def ask_cost(report: Report, db_url: str, quick: bool) -> None:
    from sqlalchemy import update

    from db import sweeps as db_sweeps
    from db.models import Sweep
    from db.session import make_session_factory
    from netfit.sweep_spec import SweepSpec
    from service.sweeps import controller
    from service.sweeps.adapter import OptunaStudy
    from service.sweeps.controller import _step, next_params
    from service.sweeps.studies import study_of, trial_states

    n_trials, epochs, rounds = (100, 10, 3) if quick else (1000, 10, 9)
    factory = make_session_factory(db_url)
    asking = {"seconds": 0.0}  # inside a step: the states read and the ask (not the trial's row written)

    def timed(fn: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                asking["seconds"] += time.perf_counter() - began
        return call

    for n_params in (16, 3):
        sweep_id = insert_completed_sweep(db_url, n_params, n_trials, epochs)
        ours, steps, native = [], [], []
        with factory() as session:
            session.execute(update(Sweep).where(Sweep.id == sweep_id).values(max_trials=n_trials + rounds + 2))
            session.commit()
            sweep = db_sweeps.sweep_for_worker(session, sweep_id)
            request = SweepSpec.model_validate(sweep.spec)
            began = time.perf_counter()
            active = _step(session, sweep_id)  # this process's first ask on the sweep: every trial read
            first = time.perf_counter() - began
            active.extend(_step(session, sweep_id))
            for _ in range(rounds):
                # as a worker does: its trial ends, then it asks for the next (2 trials at a time)
                done = active.pop(0)
                _end_trial(session, done.id, epochs, done.params["training.optimizer.lr"])
                asking["seconds"] = 0.0
                controller.trial_states, controller.next_params = timed(trial_states), timed(next_params)
                try:
                    began = time.perf_counter()
                    active.extend(_step(session, sweep_id))
                    steps.append(time.perf_counter() - began)
                finally:
                    controller.trial_states, controller.next_params = trial_states, next_params
                ours.append(asking["seconds"])
                # Optuna alone, side by side: the same trials in its in-memory study, one ask
                study = study_of(session, sweep, request, trial_states(session, sweep_id), number=n_trials)
                session.rollback()
                began = time.perf_counter()
                study.study.ask(OptunaStudy.distributions(request))
                native.append(time.perf_counter() - began)
        ours_ms, native_ms = statistics.median(ours) * ms, statistics.median(native) * ms
        label = f"TPE ask at {n_trials} trials, {n_params} parameters"
        report.figure(f"tpe_ask_{n_params}_params_ms", ours_ms, "ms", goal=("<=", 50.0) if n_params == 16 else None,
                      label=f"{label}: ours (every trial's state read, the study caught up, the ask)")
        report.figure(f"tpe_ask_{n_params}_params_optuna_ms", native_ms, "ms",
                      label=f"{label}: Optuna's ask alone, same trials")
        report.figure(f"tpe_ask_{n_params}_params_ratio", ours_ms / native_ms, "x",
                      label="  ours / Optuna's alone (a fresh sampler on a fresh study of the same trials)")
        report.figure(f"tpe_ask_{n_params}_params_step_ms", statistics.median(steps) * ms, "ms",
                      label="  the whole step: the sweep read, the ask, the trial's job row written and committed")
        report.figure(f"tpe_ask_{n_params}_params_first_ms", first * ms, "ms",
                      label="  a process's first ask on the sweep (every trial's params and curve read)")
    report.note(f"  reference: Optuna publishes ~{OPTUNA_PUBLISHED_MS:g} ms per TPE trial at 16 parameters"
                " (not measured here)")
    factory.kw["bind"].dispose()


def packed_ask(report: Report, db_url: str, quick: bool) -> None:
    from sqlalchemy import event

    from db import sweeps as db_sweeps
    from db.session import make_session_factory
    from netfit.sweep_spec import SweepSpec
    from service.settings import get_settings
    from service.sweeps import fill

    settings = replace(get_settings(), max_active_trials=128)  # as bench packed_service runs the service
    factory = make_session_factory(db_url)
    commits: list[int] = []
    event.listen(factory.kw["bind"], "commit", lambda conn: commits.append(1))
    rounds = 1 if quick else 5
    for k in (32, 128):
        seconds, counted = [], []
        for r in range(rounds + 1):  # the first: warm-up (imports, the statements' first compile)
            request = SweepSpec.model_validate({
                "name": f"bench-packed-ask-{k}", "spec": iris_spec(epochs=10), "method": "random", "seed": r,
                "parameters": {"training.optimizer.lr": {"min": 1e-4, "max": 0.1, "distribution": "log_uniform"},
                               "training.optimizer.weight_decay": {"min": 0.0, "max": 0.01}},
                "max_trials": k, "max_concurrent": k, "packing": True})
            stored = request.model_dump(mode="json") | {"max_trials": k, "objective": {"metric": "val_loss",
                                                                                       "mode": "min"}}
            with factory() as session:
                sweep_id = db_sweeps.create_sweep(session, tenant=f"bench-{k}-{r}", request=stored, method="random",
                                                  metric="val_loss", mode="min", max_trials=k, max_concurrent=k).id
            commits.clear()
            began = time.perf_counter()
            asked = fill(factory, sweep_id, lambda job_id, queue: None, settings)
            elapsed = time.perf_counter() - began
            if asked != k:
                raise RuntimeError(f"the packing sweep's fill asked {asked} trials, not {k}")
            if r:
                seconds.append(elapsed)
                counted.append(len(commits))
        total = statistics.median(seconds) * ms
        report.figure(f"packed_ask_{k}_ms", total, "ms", label=f"a {k}-trial packing sweep's trials asked (fill)")
        report.figure(f"packed_ask_{k}_per_trial_ms", total / k, "ms", label="  per trial")
        report.figure(f"packed_ask_{k}_commits", max(counted), "", label="  its commits")
    factory.kw["bind"].dispose()


def run(report: Report, *, quick: bool = False, threads: int | None = None) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="netfit-bench-sweeps-"))
    env = {"OMP_NUM_THREADS": str(threads)} if threads else {}
    try:
        with stacks.redis_pg(tmp, env) as stack:
            report.begin("sweeps", f"scheduler overhead and the TPE ask, {stack.title}")
            overhead(report, stack, quick)
        # a database of its own: a stack's reconciler would fill the running sweep the ask times
        with fresh_pg_database() as db_url:
            ask_cost(report, db_url, quick)
            packed_ask(report, db_url, quick)
    except BaseException:
        print(f"the service logs are in {tmp}")
        raise
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.sweeps")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    summary = Report()
    run(summary, quick=args.quick)
    summary.summary()
