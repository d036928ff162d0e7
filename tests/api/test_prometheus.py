"""GET /metrics: the exposition parsed as Prometheus parses it, after a real job ran on a real
worker; the scrape token; no tenant names by default; and Debian's real `prometheus` server
scraping a live API with the config the repo ships (docker/prometheus.yml), read back
through its HTTP API. The alert rules pass `promtool check rules`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Proc, free_port, iris_spec, service_env, wait_until

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_CONFIG = ROOT / "docker" / "prometheus.yml"
ALERTS = ROOT / "docker" / "prometheus-alerts.yml"


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(all_samples: dict, name: str, **labels: str) -> float:
    return all_samples[(name, tuple(sorted(labels.items())))]


def run_job(base_url: str, headers: dict[str, str] | None = None, epochs: int = 4) -> dict:
    spec = iris_spec(epochs=epochs)
    spec["training"]["early_stopping"] = None
    job = httpx.post(f"{base_url}/v1/jobs", json=spec, headers=headers, timeout=30).json()
    return wait_until(lambda: (j := httpx.get(f"{base_url}/v1/jobs/{job['id']}", headers=headers, timeout=10).json())
                      ["status"] in ("succeeded", "failed") and j, timeout=90, what="the job to finish")


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_metrics_after_a_real_job(pg_url, redis_url, start_api, start_worker):
    env = service_env(pg_url, redis_url)
    base = start_api(env)
    start_worker(env)
    job = run_job(base)
    assert job["status"] == "succeeded", job
    httpx.get(f"{base}/v1/jobs/{job['id']}", timeout=10)
    httpx.get(f"{base}/v1/jobs/no-such-job", timeout=10)

    response = httpx.get(f"{base}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    got = samples(response.text)
    assert value(got, "netfit_jobs", status="succeeded", queue="cpu") == 1
    assert value(got, "netfit_jobs", status="running", queue="cpu") == 0
    assert value(got, "netfit_epochs_total") == 4
    assert value(got, "netfit_epoch_records_total") == 4
    assert value(got, "netfit_epoch_seconds_total") > 0
    # one job waited in the queue, a fraction of a second to a few seconds
    assert value(got, "netfit_job_queue_wait_seconds_gcount") == 1
    assert value(got, "netfit_job_queue_wait_seconds_bucket", le="+Inf") == 1
    assert 0 < value(got, "netfit_job_queue_wait_seconds_gsum") < 60
    assert value(got, "netfit_job_duration_seconds_gcount", status="succeeded") == 1
    assert value(got, "netfit_reconciler_actions_total", action="resumed") == 0
    assert value(got, "netfit_workers_busy") == 0
    # by route template, never the raw path (one series for every job id)
    assert value(got, "netfit_http_requests_total", method="GET", route="/v1/jobs/{job_id}", status="200") >= 2
    assert value(got, "netfit_http_requests_total", method="GET", route="/v1/jobs/{job_id}", status="404") == 1
    assert not any(job["id"] in str(labels) for _, labels in got)
    assert value(got, "netfit_http_request_duration_seconds_count", method="POST", route="/v1/jobs") == 1
    # the default tenant's name appears nowhere
    assert "tenant" not in response.text


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_running_job_and_busy_worker(pg_url, redis_url, start_api, start_worker):
    env = service_env(pg_url, redis_url)
    base = start_api(env)
    start_worker(env)
    spec = iris_spec(epochs=3000, batch_size=4)
    spec["training"]["early_stopping"] = None
    job = httpx.post(f"{base}/v1/jobs", json=spec, timeout=30).json()
    wait_until(lambda: httpx.get(f"{base}/v1/jobs/{job['id']}", timeout=10).json()["epochs_completed"] >= 1,
               timeout=60, what="the first epoch")
    got = samples(httpx.get(f"{base}/metrics", timeout=10).text)
    assert value(got, "netfit_jobs", status="running", queue="cpu") == 1
    assert value(got, "netfit_workers_busy") == 1
    httpx.post(f"{base}/v1/jobs/{job['id']}/cancel", timeout=10)


@pytest.mark.postgres
@pytest.mark.redis
def test_scrape_token_and_tenant_labels(pg_url, redis_url):
    from tests.api.conftest import make_client

    with make_client(pg_url, redis_url, metrics_token="s3cret", metrics_tenants=True) as client:
        # no tenant API key involved: the scrape token alone decides
        denied = client.get("/metrics")
        assert denied.status_code == 401
        assert "NETFIT_METRICS_TOKEN" in denied.json()["message"]
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.post("/v1/jobs", json=iris_spec(epochs=2)).status_code == 201
        ok = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert value(samples(ok.text), "netfit_jobs", status="queued", queue="cpu", tenant="default") == 1


def test_alert_rules_pass_promtool():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool missing: scripts/test-tools.sh installs Debian's prometheus")
    result = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_real_prometheus_scrapes_the_api(pg_url, redis_url, start_api, start_worker, tmp_path):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus missing: scripts/test-tools.sh installs Debian's prometheus")
    env = service_env(pg_url, redis_url)
    base = start_api(env)
    start_worker(env)
    assert run_job(base, epochs=3)["status"] == "succeeded"

    # the shipped config, pointed at this API (in the stack the target is api:8000)
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "netfit"]
    job["static_configs"] = [{"targets": [base.removeprefix("http://")]}]
    config["global"]["scrape_interval"] = config["global"]["evaluation_interval"] = "1s"
    rules = tmp_path / "alerts.yml"
    rules.write_text(ALERTS.read_text())
    config["rule_files"] = [str(rules)]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    prom = Proc([binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{port}"], {}, tmp_path / "prometheus.log")
    try:
        def query() -> float | None:
            assert prom.alive(), prom.output()[-3000:]
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/query",
                                   params={"query": 'netfit_jobs{status="succeeded"}'}, timeout=5)
            except httpx.HTTPError:
                return None
            if answer.status_code == 503:  # "Service Unavailable" until its storage has started
                return None
            r = answer.json()
            results = r["data"]["result"] if r.get("status") == "success" else []
            return results and float(results[0]["value"][1])
        assert wait_until(query, timeout=60, interval=0.5, what="Prometheus to have scraped netfit_jobs") == 1
        targets = httpx.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5).json()
        [target] = targets["data"]["activeTargets"]
        assert target["health"] == "up", target
        rules_loaded = httpx.get(f"http://127.0.0.1:{port}/api/v1/rules", timeout=5).json()
        assert rules_loaded["data"]["groups"], "the alert rules did not load"
    finally:
        prom.stop()
