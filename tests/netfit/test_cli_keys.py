"""`netfit keys create|list|revoke` on the server's database, and what the API then does
with the keys; the SDK itself never loads the server code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from netfit.cli import main
from tests.api.conftest import make_client
from tests.conftest import ROOT


def keys(capsys, *args: str) -> tuple[str, str]:
    assert main(["keys", *args]) == 0
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_create_prints_the_key_once_list_never_shows_it_revoke_locks_it_out(capsys, monkeypatch, tmp_path, redis_url):
    # no NETFIT_DATABASE_URL: the embedded ./netfit.db that `netfit serve` uses, created if new
    monkeypatch.delenv("NETFIT_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    out, err = keys(capsys, "create", "--tenant", "team-a", "--name", "ci runner")
    key = out.strip()
    assert out == key + "\n" and key.startswith("nf_")  # stdout is the key alone: KEY=$(netfit keys create ...)
    assert "shown only this once" in err and "team-a" in err
    database = tmp_path / "netfit.db"
    assert database.exists()

    listing, _ = keys(capsys, "list")
    header, row = listing.splitlines()
    assert header.split() == ["id", "prefix", "tenant", "name", "created", "revoked"]
    assert key not in listing and key[:11] in row and "team-a" in row and "ci runner" in row and row.endswith("-")
    assert key.encode() not in b"".join(p.read_bytes() for p in tmp_path.glob("netfit.db*"))  # only its hash

    url = f"sqlite:///{database}"
    with make_client(url, redis_url) as api:
        assert api.get("/v1/jobs", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert api.get("/v1/jobs").status_code == 401  # the first key turned auth on
        out, _ = keys(capsys, "revoke", key[:9])
        assert out.startswith("revoked API key") and "team-a" in out
        assert api.get("/v1/jobs", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    listing, _ = keys(capsys, "list")
    assert not listing.splitlines()[1].endswith("-")  # the revocation time is shown
    out, _ = keys(capsys, "revoke", key[:9])
    assert out.startswith("was already revoked")


def test_bad_input_ends_with_one_line(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("NETFIT_DATABASE_URL", f"sqlite:///{tmp_path / 'k.db'}")
    for args, message in ((["revoke", "nf_nothing"], "no API key with id or prefix 'nf_nothing'"),
                          (["create", "--tenant", "a b"], "tenant 'a b'")):
        with pytest.raises(SystemExit) as exit:
            main(["keys", *args])
        assert str(exit.value).startswith("netfit: ") and message in str(exit.value)
    with pytest.raises(SystemExit):
        main(["keys", "create"])  # --tenant is required
    assert "--tenant" in capsys.readouterr().err


CHECK = """
import sys
import netfit, netfit.cli, netfit.client
loaded = {m.split(".")[0] for m in sys.modules} & {"launch", "api", "worker", "service", "db", "fastapi", "sqlalchemy"}
assert not loaded, f"the SDK loaded server code: {loaded}"
sys.modules["db"] = None  # as where only the SDK is installed
sys.exit(netfit.cli.main(["keys", "list"]))
"""


def test_sdk_loads_no_server_code_and_keys_says_what_is_missing(tmp_path: Path):
    result = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1, result.stderr
    assert "`db` is not importable" in result.stderr and "server extra" in result.stderr
    assert "Traceback" not in result.stderr
