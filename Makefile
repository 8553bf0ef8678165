# Two commands set everything up on a fresh machine:
#   make demo   virtual environment, install, build the C++ core, run the pipeline on a simulated cohort
#   make test   the same environment and the Nextflow runtime (where java and mvn exist), the static checks
#               (make lint-python: ruff, mypy), the documentation (make docs), then the test suite (what CI runs)
# Also: make docs (the Sphinx site in docs/_build/html, tutorials executed on ../shared/data), make nextflow
# (the Nextflow runtime from Maven Central), make nextflow-test (a real `nextflow run` of
# the test profile and its -resume), make container-test (the CPU image built and the test profile run in it
# with podman).
PYTHON     ?= python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
# torch is declared as a range in pyproject.toml (GPU clusters bring their CUDA build); here we pin the
# CPU wheel this kind of machine carries locally. Override: make TORCH_SPEC='torch==2.5.1' ...
TORCH_SPEC ?= torch==2.13.0
# Machines of this project keep that wheel in /opt/wheels; elsewhere pip uses its index as usual.
PIP_LOCAL  := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
DEMO_OUT   ?= demo_results
CORE_SRC   := $(shell find csrc -type f) CMakeLists.txt pyproject.toml

# Nextflow: a user's own installation when there is one, else the runtime assembled from Maven Central
NXF_DIR    := .nextflow-runtime
NXF_VERSION_PIN := $(shell sed -n 's:.*<nextflow.version>\(.*\)</nextflow.version>.*:\1:p' tools/nextflow/pom.xml)

.PHONY: all venv demo docs test lint lint-python bench bench-all clean nextflow nextflow-test

all: demo

venv: $(VENV)/.installed

$(VENV)/.installed: $(CORE_SRC)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(PIP_LOCAL) "$(TORCH_SPEC)"
	$(PY) -m pip install -q "scikit-build-core>=0.10" "pybind11>=2.12" "cmake>=3.18" ninja
	$(PY) -m pip install -q $(PIP_LOCAL) --no-build-isolation -e ".[test,docs]"
	$(PY) -c "import scprospatial._core as c; print('scprospatial: C++ core built (CUDA compiled:', c.compiled_with_cuda(), ')')"
	touch $@

demo: venv
	$(VENV)/bin/scprospatial demo --outdir $(DEMO_OUT)
	@echo "Open $(DEMO_OUT)/report/report.html in a browser."

test: venv lint-python
	@if command -v nextflow >/dev/null; then echo "make test: the real Nextflow runs use $$(command -v nextflow)"; \
	 elif command -v java >/dev/null && command -v mvn >/dev/null; then $(MAKE) --no-print-directory nextflow; \
	 else echo "make test: no nextflow, java or mvn: the real Nextflow runs (tests/test_nextflow_run.py) will be skipped"; fi
	$(MAKE) --no-print-directory docs
	$(PY) -m pytest -q

# The documentation: warnings are errors, and the tutorial notebooks run (a failing cell fails the build) where
# ../shared/data exists; without it they are shown unexecuted and the build says why.
docs: venv
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html
	@echo "Open docs/_build/html/index.html in a browser."

# The Nextflow runtime (io.nextflow:nextflow $(NXF_VERSION_PIN) and its dependencies) into $(NXF_DIR)/lib, with
# a launcher $(NXF_DIR)/nextflow; nothing downloaded is committed.
nextflow: $(NXF_DIR)/nextflow

$(NXF_DIR)/nextflow: tools/nextflow/pom.xml tools/nextflow/launcher.sh
	rm -rf $(NXF_DIR)/lib
	mvn -q -B -f tools/nextflow/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
	    -DoutputDirectory=$(abspath $(NXF_DIR))/lib
	cp tools/nextflow/launcher.sh $@
	$@ -version | grep -q "version $(NXF_VERSION_PIN)"
	@echo "Nextflow $(NXF_VERSION_PIN) runtime: $@"

# A real `nextflow run` of the test profile on a simulated cohort, then the same command with -resume (every
# task cached), through the plugin-free entry (tests/nextflow/main.nf).
nextflow-test: venv nextflow
	NEXTFLOW=$(abspath $(NXF_DIR))/nextflow $(PY) -m pytest -q tests/test_nextflow_run.py -k "every_process or resume"

# Static checks of the Python code (configured in pyproject.toml): ruff (style, import order, likely bugs) on the
# package, scripts, tests and benchmarks; mypy on the package. Any finding fails.
lint-python: venv
	$(PY) -m ruff check python bin tests benchmarks
	$(PY) -m mypy

# lint-python, then the Nextflow parser where ../shared/tools/nflint is present (errors fail; a machine without it,
# or without java, skips it with a note; tests/test_nextflow.py runs it too)
NFLINT ?= ../shared/tools/nflint
lint: lint-python
	@if [ ! -x $(NFLINT) ]; then echo "make lint: $(NFLINT) not found: Nextflow scripts not linted"; \
	 else rc=0; $(NFLINT) -q . || rc=$$?; \
	   if [ $$rc -eq 2 ]; then echo "make lint: nflint could not run (exit 2): Nextflow scripts not linted"; \
	   elif [ $$rc -ne 0 ]; then exit $$rc; fi; fi

bench: venv
	$(PY) benchmarks/bench_knn.py

# The whole benchmark suite, peers included (their own venv): regenerates every section of benchmarks/README.md and
# benchmarks/results/*.json. Several hours on 2 cores (the peers' refits dominate); needs ../shared/data.
bench-all: venv
	bash benchmarks/peers/setup.sh
	$(PY) benchmarks/bench_translation.py --peers
	$(PY) benchmarks/bench_mapping.py --threads 2 --peer-features rna predicted --peer-cache benchmarks/.peer-cache
	$(PY) benchmarks/bench_knn.py
	$(PY) benchmarks/bench_topk.py
	$(PY) benchmarks/bench_ann.py --readme
	$(PY) benchmarks/bench_write.py --readme
	$(PY) benchmarks/bench_stages.py
	$(PY) benchmarks/bench_gather.py
	$(PY) benchmarks/bench_stats.py --repeats 3,3,2 --readme
	$(PY) benchmarks/bench_speed.py
	$(PY) benchmarks/bench_scale.py --max-map-pairs 1e12

clean:
	rm -rf build $(VENV) $(DEMO_OUT) .pytest_cache .mypy_cache .ruff_cache $(NXF_DIR) docs/_build

# Container images built with podman on this kind of machine (root, no Docker engine, no Docker Hub): a Debian
# base made with debootstrap from the host's apt mirror, torch from PyPI. Opt-in, not part of `make test`;
# containers/README.md has the commands, flags and timings. The Nextflow options: containers/podman/podman.config.
.PHONY: container-base container-build container-build-cuda container-check container-test
container-base:
	containers/podman/build-base.sh

container-build:
	containers/podman/podman-build.sh cpu

container-build-cuda:
	containers/podman/podman-build.sh cuda

container-check:
	containers/podman/check-image.sh cpu --demo

# The CPU image built from this checkout, `scprospatial demo` inside it, then the pipeline's test profile with every
# process in the image (-profile test,podman); prints each step's time.
container-test: venv nextflow
	containers/podman/container-test.sh
