# Two commands for a newcomer: `make run` and `make test`.  Both bootstrap first.
# `make fuzz` runs each atheris target in fuzz/ for FUZZ_TIME seconds (default 60).
# `make soak` runs wrk -c1000 on a proxied and a unikernel route for SOAK_TIME seconds (default 600)
# and fails unless errors stay at 0 and memory and descriptors stay flat (bench/soak.py).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
FUZZ_TIME ?= 60
SOAK_TIME ?= 600
FUZZ_TARGETS := request_head response_head chunked_body config wire

.PHONY: bootstrap system venv extensions bytecode images run test test-fast test-pure bench soak fuzz clean

bootstrap: system venv extensions bytecode images

system:
	@scripts/ensure-system-packages

venv: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

extensions: _fastpath/.built

# Rebuilt only when a .pyx or setup.py changed, so `make run` starts quickly the second time.
_fastpath/.built: $(VENV)/.installed setup.py $(wildcard _fastpath/*.pyx _fastpath/*.pxd)
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .
	$(PY) setup.py -q build_ext --inplace
	touch $@

# The bytecode cache, written even under PYTHONDONTWRITEBYTECODE=1: without it every start compiles
# the gateway's source again, 130-170 ms (bench/RESULTS.md, "Gateway start, session 8").
bytecode: extensions
	$(PY) -m compileall -q gateway _fastpath

images:
	@if [ -f unikernels/Makefile ]; then $(MAKE) -s -C unikernels; fi

run: bootstrap
	@echo "gateway: serving the embedded default configuration on http://127.0.0.1:8080/ (Ctrl-C stops it)"
	@echo "gateway: it starts four unikernel services; the page at / lists the curl lines to try them"
	$(VENV)/bin/gateway -g "daemon off;"

# The whole suite with the Cython modules, then again on the pure-Python twins
# (everything but the QEMU and benchmark-style tests, which do not touch them).
test: bootstrap
	$(PY) -m pytest $(PYTEST_ARGS) tests
	GATEWAY_NO_EXTENSIONS=1 $(PY) -m pytest $(PYTEST_ARGS) -m "not qemu" tests

test-fast: bootstrap
	$(PY) -m pytest -x -q -m "not qemu and not nginx" $(PYTEST_ARGS) tests

bench: bootstrap
	$(PY) -m bench

# Writes bench/results/<time>-soak.{md,svg,csv,json}; record its figures in bench/RESULTS.md.
soak: bootstrap
	$(PY) -m bench.soak --duration $(SOAK_TIME)

# Crashes are written to fuzz/artifacts/ as crash-*; rerun one with `python fuzz/TARGET.py FILE`.
fuzz: venv extensions
	@mkdir -p fuzz/artifacts
	@for target in $(FUZZ_TARGETS); do \
		echo "fuzz: $$target for $(FUZZ_TIME)s"; \
		$(PY) fuzz/$$target.py -max_total_time=$(FUZZ_TIME) -print_final_stats=1 \
			-artifact_prefix=fuzz/artifacts/$$target- || exit 1; \
	done

clean:
	rm -rf build _fastpath/*.c _fastpath/*.so _fastpath/.built *.egg-info
	@if [ -f unikernels/Makefile ]; then $(MAKE) -s -C unikernels clean; fi
