"""Client commands on sweeps: sweep FILE [--follow], sweep cancel ID, sweeps, trials ID."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time

from netfit.cli.output import num, table, when
from netfit.client import Client
from netfit.models import Sweep, Trial

TRIAL_HEADER = ["#", "job", "status", "stop", "value", "epochs", "params"]


def _params(trial: Trial) -> str:
    return " ".join(f"{k.rsplit('.', 1)[-1] if len(k) > 24 else k}={v if not isinstance(v, float) else num(v)}"
                    for k, v in trial.params.items())


def _trial_row(trial: Trial) -> list[object]:
    stop = trial.stop_reason
    if stop == "pruned" and trial.pruned_rung is not None:
        stop = f"pruned@{trial.epochs_completed}"
    return [trial.number, trial.job_id, trial.status, stop, None if trial.value is None else num(trial.value),
            trial.epochs_completed, _params(trial)]


def _sweep_line(sweep: Sweep) -> str:
    counts = " ".join(f"{k} {v}" for k, v in sweep.trials.items() if v)
    best = (f"  best #{sweep.best.number} {sweep.objective['metric']} {num(sweep.best.value)}"
            if sweep.best and sweep.best.value is not None else "")
    rate = f"  {sweep.trials_per_minute:.1f} trials/min" if sweep.trials_per_minute else ""
    return (f"sweep {sweep.id} ({sweep.name or '-'}): {sweep.status}  {counts or 'no trials yet'}  "
            f"of {sweep.max_trials}{best}  {sweep.elapsed_seconds:.0f}s{rate}")


def board(client: Client, sweep: Sweep, top: int = 20) -> str:
    trials = client.trials(sweep.id)
    lines = [_sweep_line(sweep), table(TRIAL_HEADER, [_trial_row(t) for t in trials[:top]])]
    if len(trials) > top:
        lines.append(f"... {len(trials) - top} more: `netfit trials {sweep.id}`")
    if sweep.error:
        lines.append(f"error: {sweep.error}")
    return "\n".join(lines)


def follow(client: Client, sweep: Sweep, poll: float = 1.0) -> Sweep:
    """Redraw the leaderboard in place (ANSI: cursor up, clear to the end) until the sweep ends;
    a terminal-less output gets one board at the end only."""
    live = sys.stdout.isatty()
    drawn = 0
    while True:
        text = board(client, sweep)
        if live:
            if drawn:
                sys.stdout.write(f"\x1b[{drawn}F\x1b[J")
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
            drawn = text.count("\n") + 1
        if sweep.done:
            if not live:
                print(text)
            return sweep
        time.sleep(poll)
        sweep = client.get_sweep(sweep.id)


def cmd_sweep(client: Client, args: argparse.Namespace) -> int:
    if args.target[0] == "cancel":
        if len(args.target) != 2:
            print("usage: netfit sweep cancel ID", file=sys.stderr)
            return 2
        sweep = client.cancel_sweep(args.target[1])
        print(_sweep_line(sweep))
        return 0
    if len(args.target) != 1:
        print("usage: netfit sweep FILE [--follow]  |  netfit sweep cancel ID", file=sys.stderr)
        return 2
    sweep = client.sweep(args.target[0])
    print(f"started sweep {sweep.id}: {sweep.max_trials} trials, {sweep.max_concurrent} at a time "
          f"({sweep.method}, {sweep.objective['metric']} {sweep.objective['mode']})")
    if not args.follow:
        return 0
    try:
        sweep = follow(client, sweep)
    except KeyboardInterrupt:  # stop watching, not the sweep
        print(f"\nstopped following; {sweep.id} goes on: `netfit trials {sweep.id}`, `netfit sweep cancel {sweep.id}`")
        return 130
    return 0 if sweep.status == "succeeded" else 2


def cmd_sweeps(client: Client, args: argparse.Namespace) -> int:
    rows = [[s.id, s.name or "", s.status, s.method, f"{sum(v for k, v in s.trials.items() if k != 'pruned')}"
             f"/{s.max_trials}", s.trials.get("pruned", 0),
             None if s.best is None or s.best.value is None else num(s.best.value), when(s.created_at)]
            for s in client.sweeps(limit=args.limit)]
    print(table(["id", "name", "status", "method", "trials", "pruned", "best", "created"], rows))
    return 0


def cmd_trials(client: Client, args: argparse.Namespace) -> int:
    trials = client.trials(args.id)
    if args.format == "json":
        print(json.dumps([t.model_dump(mode="json") for t in trials], indent=2))
    elif args.format == "csv":
        names = sorted({k for t in trials for k in t.params})
        out = csv.writer(sys.stdout)
        out.writerow(["number", "job_id", "status", "stop_reason", "value", "epochs_completed", *names])
        for t in trials:
            out.writerow([t.number, t.job_id, t.status, t.stop_reason or "", "" if t.value is None else t.value,
                          t.epochs_completed, *(json.dumps(t.params.get(n)) if isinstance(t.params.get(n), (list, dict))
                                                else t.params.get(n, "") for n in names)])
    else:
        print(table(TRIAL_HEADER, [_trial_row(t) for t in trials]))
    return 0


def register(command, formatter) -> None:  # see netfit.cli.build_parser
    sub = command("sweep", "start a sweep (a JSON file: examples/README.md, \"Sweeps\"), or `sweep cancel ID`", cmd_sweep)
    sub.add_argument("target", nargs="+", metavar="FILE | cancel ID")
    sub.add_argument("--follow", "-f", action="store_true",
                     help="redraw the leaderboard until the sweep ends (exit 2 unless it succeeds)")

    sub = command("sweeps", "list sweeps, newest first", cmd_sweeps)
    sub.add_argument("--limit", type=int, default=20, help="how many (default %(default)s)")

    sub = command("trials", "a sweep's leaderboard, best first", cmd_trials)
    sub.add_argument("id")
    sub.add_argument("--format", choices=["table", "csv", "json"], default="table")
