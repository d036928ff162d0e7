"""`netfit`: the command line, a thin shell over `netfit.Client`.

    netfit serve                                  # embedded service: API + worker, no servers needed
    netfit submit examples/iris_two_layers_small.json --follow
    netfit metrics ID --format csv
    netfit plot ID -o curves.png
    netfit plot ID --layers -o layers.png         # each layer's max |w| and gradient norm vs epoch
    netfit keys create --tenant team-a            # on the server: an API key, printed once

Each module of this package registers its commands (`register(command, formatter)`);
add a module to COMMAND_MODULES to add commands. Errors from the API end the command with
one line and exit status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib import metadata

from netfit import __version__
from netfit.cli import cluster, jobs, models, server, sweeps
from netfit.client import Client, NetfitError

CLIENT_ENV_HELP = """\
environment:
  NETFIT_API_URL  the API to talk to (default http://127.0.0.1:8000); or --url
  NETFIT_API_KEY  bearer key; or --api-key
"""

# in the order `netfit --help` lists them
COMMAND_MODULES = (server, jobs, sweeps, models, cluster)


def _version() -> str:
    try:
        return metadata.version("netfit")
    except metadata.PackageNotFoundError:
        return __version__


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="netfit", formatter_class=formatter,
        description="model.fit as a service: submit a network, a data set and a recipe; follow, plot and download.",
        epilog=CLIENT_ENV_HELP,
    )
    parser.add_argument("--version", action="version", version=f"netfit {_version()}")
    parser.add_argument("--url", help="API base URL (default: $NETFIT_API_URL or http://127.0.0.1:8000)")
    parser.add_argument("--api-key", help="API key (default: $NETFIT_API_KEY)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help: str, run: Callable | None, epilog: str = CLIENT_ENV_HELP,
                server: bool = False) -> argparse.ArgumentParser:
        """A subcommand; `run(client, args)`, or `run(args)` for a server command (no client)."""
        sub = commands.add_parser(name, help=help, description=help, epilog=epilog, formatter_class=formatter)
        sub.set_defaults(run=run, server=server)
        return sub

    for module in COMMAND_MODULES:
        module.register(command, formatter)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.server:
            return args.run(args)
        with Client(base_url=args.url, api_key=args.api_key) as client:
            return args.run(client, args)
    except NetfitError as exc:
        # a server fault is for its operator: the request id finds it in the server's log
        trace = f" (request id {exc.request_id})" if exc.status_code >= 500 and exc.request_id else ""
        print(f"netfit: {exc}{trace}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `netfit metrics ID | head`: the reader has gone; say nothing more (and let Python's
        # final flush of stdout go nowhere instead of printing a second error)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, OSError) as exc:  # a spec file that is missing or not JSON, an unwritable -o
        print(f"netfit: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
