"""Forming a pack: a packing sweep's trials of one shape, trained together on one worker as one
batched model (netfit.engine.packed.fit_packed).

No controller: a pack forms when a worker claims a trial of a packing sweep. It then claims, at
once, the sweep's other claimable trials with the same pack key and the same resume epoch (fill
sends a packing sweep's messages only after asking all its trials, so the first message finds
them queued); their own messages later find nothing to claim. From there a pack trains as any
job does (worker.runner: one lease, one persister, each member its own end): each member keeps
its row, attempt, lease expiry, metrics, events, checkpoints and resume state. After a kill, the
reconciler re-sends each member's message as for any job; the first one claims the whole pack
again (same epoch: it was saved in one transaction) and resumes it.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from db import attempts as db_attempts
from db import sweeps as db_sweeps
from netfit.packing import max_members, pack_key, packable
from netfit.spec import JobSpec
from netfit.sweep_spec import MAX_PACK
from service.settings import get_settings
from worker import registry
from worker.retry import with_db_retry


def claim_pack(factory: sessionmaker[Session], job_id: str, attempt: int, owner: str) -> dict[str, int] | None:
    """For a claimed trial of a packing sweep: {job id: attempt} of it and the trials claimed with
    it (it first). None: not a packing trial (or one that cannot pack): it trains alone."""
    settings = get_settings()
    on_cpu = registry.device_name() == "cpu"  # what this worker trains on (a spec may also ask for the CPU)

    def claim(session: Session) -> dict[str, int] | None:
        job = db_attempts.job_for_worker(session, job_id)
        if job is None or job.sweep_id is None:
            return None
        sweep = db_sweeps.sweep_for_worker(session, job.sweep_id)
        if sweep is None or not sweep.spec.get("packing"):
            return None
        spec = JobSpec.model_validate(job.spec)
        if packable(spec) is not None:
            return None
        key, epoch = pack_key(spec), db_attempts.resume_epoch(session, job_id)
        # A pack never mixes resume epochs (fit_packed refuses): members whose saved states differ
        # after a crash (one left the pack before it, or a flush was lost) resume as separate packs,
        # one per epoch: each re-sent message claims those of its own epoch.
        rows = db_attempts.claimable_trials(session, job.sweep_id, exclude=job_id, max_attempts=settings.max_attempts,
                                          limit=4 * MAX_PACK)
        wanted = [r.id for r in rows if r.resume_epoch == epoch and pack_key(JobSpec.model_validate(r.spec)) == key]
        size = max_members(spec, on_cpu=on_cpu or spec.training.device == "cpu")
        taken = db_attempts.claim(session, wanted[: size - 1], owner, lease_seconds=settings.lease_seconds,
                                max_attempts=settings.max_attempts)
        members = {job_id: attempt, **taken}
        db_attempts.note_pack(session, members, leader=job_id, resume_after=epoch)
        return members

    return with_db_retry(claim, factory)
