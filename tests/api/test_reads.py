"""The read fast paths: GET .../metrics serves a finished job's rows from a cache, a running
job's fresh from the database; GET /v1/jobs reads plain rows, a light item a job. Same JSON as
the models give."""

from __future__ import annotations

from sqlalchemy import insert, update

from db import jobs as db_jobs
from db.models import EpochMetric, Job
from db.session import make_session_factory
from netfit.models import EpochMetrics, JobItem
from tests.api.conftest import make_client
from tests.api.conftest import bearer, new_key
from tests.api.conftest import assert_error_body
from tests.conftest import iris_spec


def test_metrics_of_a_running_job_are_never_stale_and_a_finished_jobs_are_kept_per_tenant(pg_url, redis_url):
    factory = make_session_factory(pg_url)

    def add_epoch(job_id: str, epoch: int, **values: float) -> None:
        with factory() as session:
            session.execute(insert(EpochMetric).values(job_id=job_id, epoch=epoch, lr=0.01, **values))
            session.commit()

    def set_status(job_id: str, status: str) -> None:
        with factory() as session:
            session.execute(update(Job).where(Job.id == job_id).values(status=status))
            session.commit()

    with factory() as session:
        job_id = db_jobs.create_job(session, tenant="team-a", spec=iris_spec(), summary=None, queue="cpu").id
    owner, other = bearer(new_key(pg_url, "team-a")), bearer(new_key(pg_url, "team-b"))
    path = f"/v1/jobs/{job_id}/metrics"
    set_status(job_id, "running")
    # NaN and inf cannot be JSON: they come back as null, as EpochMetrics renders them
    add_epoch(job_id, 1, train_loss=float("nan"), val_loss=float("inf"), seconds=0.5)
    with make_client(pg_url, redis_url) as c:
        first = c.get(path, headers=owner)
        assert first.status_code == 200, first.text
        assert first.json() == {"items": [EpochMetrics(epoch=1, lr=0.01, seconds=0.5).model_dump()], "next_cursor": None}
        add_epoch(job_id, 2, train_loss=0.25)
        assert [row["epoch"] for row in c.get(path, headers=owner).json()["items"]] == [1, 2]  # no stale read
        add_epoch(job_id, 3, train_loss=0.125)
        set_status(job_id, "succeeded")
        finished = c.get(path, headers=owner)
        assert [row["train_loss"] for row in finished.json()["items"]] == [None, 0.25, 0.125]
        assert c.get(path, headers=owner).content == finished.content  # served again, now kept
        assert_error_body(c.get(path, headers=other), 404, "not_found")  # kept per tenant
        listed = c.get("/v1/jobs", headers=owner).json()["items"]
        whole = c.get(f"/v1/jobs/{job_id}", headers=owner).json()
        assert listed == [JobItem.model_validate(whole).model_dump(mode="json")]  # the same values, fewer
    with make_client(pg_url, redis_url) as fresh:  # another process: nothing kept, read anew
        assert fresh.get(path, headers=owner).content == finished.content
    factory.kw["bind"].dispose()


def test_every_list_pages_the_same_way_and_a_bad_cursor_names_the_field(pg_url, redis_url):
    factory = make_session_factory(pg_url)
    with factory() as session:
        job_id = db_jobs.create_job(session, tenant="default", spec=iris_spec(), summary=None, queue="cpu").id
        session.execute(insert(EpochMetric), [{"job_id": job_id, "epoch": e, "lr": 0.01} for e in (1, 2, 3)])
        session.execute(update(Job).where(Job.id == job_id).values(status="succeeded"))
        session.commit()
    path = f"/v1/jobs/{job_id}/metrics"
    with make_client(pg_url, redis_url) as c:
        whole = c.get(path).json()
        assert ([r["epoch"] for r in whole["items"]], whole["next_cursor"]) == ([1, 2, 3], None)
        first = c.get(path, params={"limit": 2}).json()
        assert ([r["epoch"] for r in first["items"]], first["next_cursor"]) == ([1, 2], "2")
        rest = c.get(path, params={"limit": 2, "cursor": first["next_cursor"]}).json()
        assert ([r["epoch"] for r in rest["items"]], rest["next_cursor"]) == ([3], None)
        assert c.get(path).content == c.get(path).content  # the kept page is the whole one
        assert c.get(f"/v1/jobs/{job_id}/checkpoints").json() == {"items": [], "next_cursor": None}
        for url in ("/v1/jobs", "/v1/sweeps", "/v1/datasets"):
            body = assert_error_body(c.get(url, params={"cursor": "not-a-cursor"}), 422, "invalid")
            assert body["details"][0]["loc"] == ["query", "cursor"] and "next_cursor" in body["message"], url
    factory.kw["bind"].dispose()


def test_a_list_item_shows_what_a_list_does_and_the_whole_job_stays_at_its_own_url(pg_url, redis_url):
    factory = make_session_factory(pg_url)
    spec = iris_spec(epochs=20) | {"name": "by accuracy"}
    spec["training"]["early_stopping"] = {"monitor": "val_accuracy", "patience": 3}
    with factory() as session:
        plain = db_jobs.create_job(session, tenant="default", spec=iris_spec(), summary=None, queue="cpu").id
        job_id = db_jobs.create_job(session, tenant="default", spec=spec, summary=None, queue="cpu").id
        session.execute(update(Job).where(Job.id == job_id).values(
            status="succeeded", stop_reason="early_stopping", epochs_completed=9, best_epoch=6,
            best_metrics={"val_loss": 0.25, "val_accuracy": 0.96}, test_metrics={"test_accuracy": 0.93}))
        session.commit()
    with make_client(pg_url, redis_url) as c:
        item, other = c.get("/v1/jobs").json()["items"]
        assert item == {"id": job_id, "name": "by accuracy", "status": "succeeded", "stop_reason": "early_stopping",
                        "epochs": 20, "epochs_completed": 9, "best_epoch": 6, "monitor": "val_accuracy",
                        "best_metrics": {"val_loss": 0.25, "val_accuracy": 0.96},
                        "test_metrics": {"test_accuracy": 0.93}, "sweep_id": None, "trial_number": None,
                        "created_at": item["created_at"], "started_at": None, "finished_at": None}
        assert (other["id"], other["monitor"]) == (plain, "val_loss")  # no early stopping: the default
        whole = c.get(f"/v1/jobs/{job_id}").json()
        assert whole["spec"]["training"]["early_stopping"]["monitor"] == "val_accuracy"
        assert whole["created_at"] == item["created_at"]
    factory.kw["bind"].dispose()


def test_every_request_gives_its_database_connection_back_errors_too(pg_url, redis_url):
    """Sync endpoints run with their session in one thread (api.deps.OneThreadRoute), which
    closes it there: a leaked session would hold one of the pool's 15 connections for good."""
    with make_client(pg_url, redis_url) as c:
        job_id = c.post("/v1/jobs", json=iris_spec()).json()["id"]
        for _ in range(20):
            assert c.get(f"/v1/jobs/{job_id}").status_code == 200
            assert c.get("/v1/jobs").status_code == 200
            assert_error_body(c.get("/v1/jobs/nosuchjob123"), 404, "not_found")
            assert_error_body(c.post(f"/v1/jobs/{job_id}/predict", json={"instances": [[1, 2, 3, 4]]}), 409, "conflict")
        assert c.app.state.session_factory.kw["bind"].pool.checkedout() == 0
