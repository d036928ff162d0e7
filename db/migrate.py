"""Apply the Alembic migrations: `upgrade(url)`, or `python -m db.migrate [URL]`."""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

INI = Path(__file__).with_name("alembic.ini")


def config(url: str) -> Config:
    cfg = Config(str(INI))
    # passed as an attribute, not a config option: a URL's '%' would be read as interpolation
    cfg.attributes["url"] = url
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(config(url), revision)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit('usage: python -m db.migrate URL   (e.g. "$NETFIT_DATABASE_URL")')
    url = args[0]
    upgrade(url)
    print(f"database at {url.split('@')[-1]} is up to date")


if __name__ == "__main__":
    main()
