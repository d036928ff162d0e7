"""The shared cluster: `netfit workers`, `netfit usage`, `netfit delete job|sweep|dataset ID`,
and on the server `netfit tenants set|list` (each tenant's weight and caps)."""

from __future__ import annotations

import argparse

from netfit.cli.output import table, when
from netfit.client import Client

TENANTS_HELP = """\
A free worker takes the highest priority first, then the tenant with the least running work
for its weight (weight 2 gets twice the workers of weight 1 when both wait), then the oldest.
A tenant without settings has weight 1 and no caps.

environment:
  NETFIT_DATABASE_URL  the server's database (default sqlite:///./netfit.db, as `netfit serve`)
"""


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def cmd_workers(client: Client, args: argparse.Namespace) -> int:
    rows = []
    for w in client.workers():
        training = ", ".join(f"{j.id or '(another tenant)'} epoch {j.epochs_completed}" for j in w.jobs) or "idle"
        rows.append([w.id, w.host, w.pid, ",".join(w.queues), w.device, when(w.started_at), when(w.last_seen_at),
                     training])
    print(table(["id", "host", "pid", "queues", "device", "started", "last seen", "training"], rows))
    return 0


def cmd_usage(client: Client, args: argparse.Namespace) -> int:
    u = client.usage()
    print(f"tenant {u.tenant}: {u.running_jobs} running, {u.queued_jobs} queued; "
          f"weights {_size(u.checkpoint_bytes)}, {u.datasets} data sets {_size(u.dataset_bytes)}")
    return 0


def cmd_delete(client: Client, args: argparse.Namespace) -> int:
    {"job": client.delete_job, "sweep": client.delete_sweep, "dataset": client.delete_dataset}[args.what](args.id)
    print(f"deleted {args.what} {args.id}" + (" and its trials" if args.what == "sweep" else ""))
    return 0


def cmd_tenants_set(args: argparse.Namespace) -> int:
    from netfit.cli.server import server_database

    clear = tuple(name for name in ("weight", "max_priority", "max_running") if getattr(args, f"clear_{name}"))
    with server_database() as session:
        tenants = _tenants()
        try:
            row = tenants.set_tenant(session, args.name, weight=args.weight, max_priority=args.max_priority,
                                     max_running=args.max_running, clear=clear)
        except ValueError as exc:
            raise SystemExit(f"netfit: {exc}") from None
        print(_describe(row))
    return 0


def cmd_tenants_list(args: argparse.Namespace) -> int:
    from netfit.cli.server import server_database

    with server_database() as session:
        rows = [[t.name, f"{t.weight:g}", _cap(t.max_priority), _cap(t.max_running), when(t.updated_at)]
                for t in _tenants().list_tenants(session)]
    print(table(["tenant", "weight", "max priority", "max running", "updated"], rows))
    return 0


def _tenants():
    from netfit.cli.server import tenant_store

    return tenant_store()


def _cap(value: int | None) -> str:
    return "-" if value is None else str(value)


def _describe(t) -> str:
    return (f"tenant '{t.name}': weight {t.weight:g}, max priority {_cap(t.max_priority)}, "
            f"max running {_cap(t.max_running)}")


def register(command, formatter) -> None:  # see netfit.cli.build_parser
    command("workers", "the live workers: host, queues, device, what each trains", cmd_workers)
    command("usage", "your running and queued jobs and the bytes your weights and data sets keep", cmd_usage)
    sub = command("delete", "delete an ended job, an ended sweep (with its trials) or an unused data set", cmd_delete)
    sub.add_argument("what", choices=("job", "sweep", "dataset"))
    sub.add_argument("id")
    tenants = command("tenants", "set and list tenants' weights and caps (on the server's database)", None,
                      TENANTS_HELP, server=True)
    actions = tenants.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub = actions.add_parser("set", help="create or change a tenant's settings", description=TENANTS_HELP,
                             formatter_class=formatter)
    sub.set_defaults(run=cmd_tenants_set)
    sub.add_argument("name", metavar="NAME", help="the tenant (as in `netfit keys create --tenant`)")
    sub.add_argument("--weight", type=float, help="its fair share of the workers (default 1)")
    sub.add_argument("--max-priority", type=int, help="the highest priority its jobs may ask (-100..100)")
    sub.add_argument("--max-running", type=int, help="its jobs running at once, at most")
    for name in ("weight", "max_priority", "max_running"):
        sub.add_argument(f"--clear-{name.replace('_', '-')}", action="store_true",
                         help=f"back to the default ({'1' if name == 'weight' else 'no cap'})")
    sub = actions.add_parser("list", help="list tenants with settings", description=TENANTS_HELP,
                             formatter_class=formatter)
    sub.set_defaults(run=cmd_tenants_list)
