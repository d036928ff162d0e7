"""Which parameters mattered: PED-ANOVA over a sweep's completed trials (it fits no model)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from netfit.sweep_spec import SweepSpec
from service.sweeps.studies import study_of, trial_states


def importance(session: Session, sweep: Any) -> tuple[str, dict[str, float], int, str | None]:
    """(evaluator, {path: importance}, trials used, note)."""
    request = SweepSpec.model_validate(sweep.spec)
    study = study_of(session, sweep, request, trial_states(session, sweep.id), number=sweep.trials_asked)
    complete = study.completed()
    name = "ped_anova"
    if len(complete) < 2:
        return name, {}, len(complete), "importance needs at least 2 completed (not pruned) trials"
    varying = [p for p in request.parameters if len({repr(t.params.get(p)) for t in complete}) > 1]
    if not varying:
        return name, {}, len(complete), "the completed trials share the same parameter values"
    try:
        values = study.importance(varying)
    except Exception as exc:  # noqa: BLE001 - too few trials for the evaluator, say so
        return name, {}, len(complete), f"importance could not be computed yet: {str(exc).splitlines()[0][:200]}"
    return name, values, len(complete), None
