# The quick start: `make run` (install into .venv, start the embedded service) and
# `make test` (install, start PostgreSQL/Redis if they are down, run every test).
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
BENCH_STAMP := $(VENV)/.bench-stamp

.PHONY: install run test services bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	# by uv, from where pip would take them (scripts/install.py); torch pinned: a bare `torch`
	# on an empty venv pulls a multi-GB CUDA build
	$(PY) scripts/install.py torch==2.13.0 -e '.[server,plot,dev]'
	# the server packages (launch, api, worker, service, db) are run from this checkout, not published
	echo "$(CURDIR)" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/netfit-checkout.pth"
	# their bytecode too (no process writes it where PYTHONDONTWRITEBYTECODE is set)
	$(PY) -m compileall -q -j 0 api bench db launch netfit service worker > /dev/null
	touch $(STAMP)

install: $(STAMP)

# Lightning and Keras: the contenders of `make bench`; the suite runs its smoke test, so
# `make test` installs them too, with the interop extra (Triton's client, TensorBoard, MLflow:
# the suite checks /v2, the TensorBoard and MLflow exports with them);
# `make run` needs none of them
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[bench,mlflow,interop]'
	touch $(BENCH_STAMP)

run: install
	$(VENV)/bin/netfit serve

services:
	bash scripts/services.sh
	# Docker, docker-compose, debootstrap, prometheus, chromium: what the container, Prometheus and browser tests run (once)
	bash scripts/test-tools.sh

test: $(BENCH_STAMP) services
	$(VENV)/bin/pytest

# every benchmark (engine, service, api, http, dashboard, predict, packed, sweeps) with its goal, PASS or MISS; 12-16 min quiet
# needs PostgreSQL and Redis (like `make test`); BENCH="engine --rounds 9" picks sections and options
bench: $(BENCH_STAMP) services
	$(PY) -m bench $(BENCH)

clean:
	rm -rf $(VENV) netfit.db* .pytest_cache
