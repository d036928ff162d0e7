"""When a trial is judged by its sweep's pruner, and the verdict. `prunes_at` is the one rule;
a worker asks it before an epoch's rows are batched (a judged epoch's rows are written first,
since the pruner reads them) and `prune_decision` asks the pruner after they are written;
`prune_decisions` judges a pack's members after the same epoch in one read and one study."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session, sessionmaker

from db import sweeps as db_sweeps
from netfit.sweep_spec import SweepSpec
from service.sweeps.adapter import rung_steps
from service.sweeps.studies import study_of, trial_states

log = logging.getLogger("netfit.sweeps")


def prunes_at(request: SweepSpec, epoch: int, epochs: int | None = None) -> bool:
    """Whether the sweep's pruner judges a trial after this epoch: ASHA at its rung epochs,
    median at every epoch from min_epochs on, none never; and never a trial's last epoch of
    `epochs` (it ends there anyway: pruning saves nothing)."""
    p = request.pruning
    if p.type == "none" or epoch < p.min_epochs or (epochs is not None and epoch >= epochs):
        return False
    return p.type != "asha" or epoch in rung_steps(request, epoch)


# job id -> (its sweep's request, or None: not a trial; the job's epochs); neither ever changes
_trial_of: dict[str, tuple[SweepSpec | None, int]] = {}


def _trial(factory: sessionmaker[Session], job_id: str) -> tuple[SweepSpec | None, int]:
    if job_id not in _trial_of:
        if len(_trial_of) > 10_000:
            _trial_of.clear()
        with factory() as session:
            sweep_id, epochs = db_sweeps.sweep_and_epochs(session, job_id)
            sweep = db_sweeps.sweep_for_worker(session, sweep_id) if sweep_id else None
            _trial_of[job_id] = (SweepSpec.model_validate(sweep.spec) if sweep else None, epochs)
    return _trial_of[job_id]


def judges(factory: sessionmaker[Session], job_id: str, epoch: int) -> bool:
    """prunes_at for a job (its sweep's request and its epochs, read once per job)."""
    request, epochs = _trial(factory, job_id)
    return request is not None and prunes_at(request, epoch, epochs)


def prune_decision(factory: sessionmaker[Session], job_id: str, epoch: int) -> str | None:
    """After a trial's epoch is recorded: "pruned" if the sweep's pruner stops it here (the
    rung is recorded on the job), else None (also when the pruner does not judge this epoch)."""
    if not judges(factory, job_id, epoch):
        return None
    request = _trial(factory, job_id)[0]
    with factory() as session:
        sweep_id = db_sweeps.sweep_of_job(session, job_id)
        sweep = db_sweeps.sweep_for_worker(session, sweep_id) if sweep_id else None
        if sweep is None:
            return None
        if epoch not in db_sweeps.trial_curve(session, job_id, sweep.objective_metric):
            return None  # no objective value this epoch (e.g. no validation split)
        rows = trial_states(session, sweep_id)
        study = study_of(session, sweep, request, rows, number=sweep.trials_asked, judged=job_id)
        number = next(r.trial_number for r in rows if r.id == job_id)
        if not study.prunes(number):
            return None
        rung = rung_steps(request, epoch).index(epoch) if request.pruning.type == "asha" else epoch
        db_sweeps.mark_pruned(session, job_id, epoch, rung)
        log.info("sweep %s: trial %d pruned at epoch %d (rung %d)", sweep_id, number, epoch, rung)
        return "pruned"


def prune_decisions(factory: sessionmaker[Session], job_ids: list[str], epoch: int) -> dict[str, str]:
    """prune_decision for several trials of one sweep after the same epoch (a pack's members):
    {job id: "pruned"} for those its pruner stops, each verdict the one prune_decision gives, with
    one read of the sweep's trials, one study, and the prunings recorded in one transaction
    (one read, one study and one commit a member made a 32-member pack's judged epoch ~200
    statements)."""
    judged = [j for j in job_ids if judges(factory, j, epoch)]
    if not judged:
        return {}
    request = _trial(factory, judged[0])[0]
    with factory() as session:
        sweep_id = db_sweeps.sweep_of_job(session, judged[0])
        sweep = db_sweeps.sweep_for_worker(session, sweep_id) if sweep_id else None
        if sweep is None:
            return {}
        of_sweep = db_sweeps.sweeps_of_jobs(session, judged)
        others = [j for j in judged if of_sweep.get(j) != sweep_id]  # never in a pack: judged alone
        curves = db_sweeps.objective_curves(session, sweep_id, sweep.objective_metric,
                                            [j for j in judged if j not in others])
        judged = [j for j in judged if j not in others and epoch in curves.get(j, {})]  # no value: not judged
        verdicts = {}
        if judged:
            rows = trial_states(session, sweep_id)
            study = study_of(session, sweep, request, rows, number=sweep.trials_asked)
            numbers = {r.id: r.trial_number for r in rows}
            asha = request.pruning.type == "asha"
            rung = rung_steps(request, epoch).index(epoch) if asha else epoch
            pruned = [j for j in judged if study.prunes(numbers[j], f"completed_rung_{rung}" if asha else None)]
            if pruned:
                db_sweeps.mark_pruned_all(session, pruned, epoch, rung)
            for j in pruned:
                log.info("sweep %s: trial %d pruned at epoch %d (rung %d)", sweep_id, numbers[j], epoch, rung)
            verdicts = dict.fromkeys(pruned, "pruned")
    for j in others:
        if prune_decision(factory, j, epoch):
            verdicts[j] = "pruned"
    return verdicts
