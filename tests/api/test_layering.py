"""The import rules of DESIGN §2, checked in a fresh interpreter: db stays a plain library,
Celery's app does not pull in torch, and the API never loads the training loop."""

import subprocess
import sys

CHECK = """
import sys
import db.jobs, db.datasets, db.migrate
assert not {"fastapi", "celery", "torch"} & set(sys.modules), "db imported a server/training library"
import worker.celery_app
assert "torch" not in sys.modules, "worker.celery_app imported torch"
from api.app import create_app
from api.settings import Settings
create_app(Settings(database_url="sqlite://", broker_url="redis://127.0.0.1:6379/0"))
import worker.engine.data, worker.engine.layers   # what the API's validation uses
assert "worker.engine.fit" not in sys.modules and "worker.tasks" not in sys.modules, "the API loaded the training loop"
"""


def test_import_rules_hold():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
