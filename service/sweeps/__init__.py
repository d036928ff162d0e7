"""Sweeps: the controller that asks Optuna for trials (controller), when the pruner judges a
trial and its verdict (pruning), which parameters mattered (parameter_importance), the study rebuilt from
our rows (studies), and Optuna itself behind one adapter class (adapter)."""

from service.sweeps.controller import after_job, fill, forget, repair
from service.sweeps.parameter_importance import importance
from service.sweeps.pruning import judges, prune_decision, prune_decisions, prunes_at

__all__ = ["after_job", "fill", "forget", "importance", "judges", "prune_decision", "prune_decisions", "prunes_at", "repair"]
