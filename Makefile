# Two commands set everything up on a fresh machine:
#   make demo   virtual environment, install, build the C++ core, run the pipeline on a simulated cohort
#   make test   the same environment, then the test suite (what CI runs)
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

.PHONY: all venv demo test lint bench bench-all clean

all: demo

venv: $(VENV)/.installed

$(VENV)/.installed: $(CORE_SRC)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(PIP_LOCAL) "$(TORCH_SPEC)"
	$(PY) -m pip install -q "scikit-build-core>=0.10" "pybind11>=2.12" "cmake>=3.18" ninja
	$(PY) -m pip install -q $(PIP_LOCAL) --no-build-isolation -e ".[test]"
	$(PY) -c "import scprospatial._core as c; print('scprospatial: C++ core built (CUDA compiled:', c.compiled_with_cuda(), ')')"
	touch $@

demo: venv
	$(VENV)/bin/scprospatial demo --outdir $(DEMO_OUT)
	@echo "Open $(DEMO_OUT)/report/report.html in a browser."

test: venv
	$(PY) -m pytest -q

lint:
	../shared/tools/nflint -q . || true

bench: venv
	$(PY) benchmarks/bench_knn.py

# The whole benchmark suite, peers included (their own venv): regenerates every section of benchmarks/README.md and
# benchmarks/results/*.json. Several hours on 2 cores (the peers' refits dominate); needs ../shared/data.
bench-all: venv
	bash benchmarks/peers/setup.sh
	$(PY) benchmarks/bench_translation.py --peers
	$(PY) benchmarks/bench_mapping.py --threads 2 --peer-cache benchmarks/.peer-cache
	$(PY) benchmarks/bench_knn.py
	$(PY) benchmarks/bench_topk.py
	$(PY) benchmarks/bench_gather.py
	$(PY) benchmarks/bench_speed.py
	$(PY) benchmarks/bench_scale.py --max-map-pairs 1e12

clean:
	rm -rf build $(VENV) $(DEMO_OUT) .pytest_cache
