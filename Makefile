# The quick start: `make run` (install into .venv, start the embedded service) and
# `make test` (install, start PostgreSQL/Redis if they are down, run every test).
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
BENCH_STAMP := $(VENV)/.bench-stamp

.PHONY: install run test services bench clean

# Each module's bytecode is written by the first process that imports it, and read by every
# later start: an install compiles nothing (compiling all 21,000 of the venv's modules took
# 55 s of CPU, ten times what `make run` imports). Where PYTHONDONTWRITEBYTECODE is set, no
# process would write it and every start would compile ~1,800 modules from source (13 s).
unexport PYTHONDONTWRITEBYTECODE

$(STAMP): pyproject.toml
	# without pip: uv puts it in with the rest (scripts/install.py), 10 times faster than ensurepip
	test -x $(PY) || python3 -m venv --without-pip $(VENV)
	# by uv, from where pip would take them (scripts/install.py); torch pinned: a bare `torch`
	# on an empty venv pulls a multi-GB CUDA build
	$(PY) scripts/install.py pip torch==2.13.0 -e '.[server,plot,dev]'
	# the server packages (launch, api, worker, service, db) are run from this checkout, not published
	echo "$(CURDIR)" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/netfit-checkout.pth"
	touch $(STAMP)

install: $(STAMP)

# Lightning and Keras: the contenders of `make bench`; the suite runs its smoke test, so
# `make test` installs them too, with the interop extra (Triton's client, TensorBoard, MLflow:
# the suite checks /v2, the TensorBoard and MLflow exports with them);
# `make run` needs none of them
$(BENCH_STAMP): $(STAMP)
	# by uv as above: pip took 45 s for these, uv 5 s (the same versions)
	$(PY) scripts/install.py -e '.[bench,mlflow,interop]'
	touch $(BENCH_STAMP)

run: install
	$(VENV)/bin/netfit serve

services:
	bash scripts/services.sh
	# Docker, docker-compose, debootstrap, prometheus, chromium: what the container, Prometheus and browser tests run (once)
	bash scripts/test-tools.sh

test: $(BENCH_STAMP) services
	$(VENV)/bin/pytest

# every benchmark (engine, service, api, http, dashboard, predict, packed, sweeps) with its goal, PASS or MISS; ~20 min quiet
# needs PostgreSQL and Redis (like `make test`); BENCH="engine --rounds 9" picks sections and options
bench: $(BENCH_STAMP) services
	$(PY) -m bench $(BENCH)

clean:
	rm -rf $(VENV) netfit.db* .pytest_cache
