# One-command entry points for a fresh machine (Python 3.9+, a C++17 compiler, cmake >= 3.18).
#   make demo   score 200 NB201 cells on the bundled CIFAR-10 images, print the correlation table
#   make test   run the test suite (CPU; Triton kernels through its interpreter)
#   make check-install   build an sdist and a wheel and run the wheel from a clean venv
# Both create .venv on first use: torch is installed first as the pinned CPU wheel so that no
# multi-GB CUDA build is pulled, then zcfast itself (compiling zcfast._C with CMake), with the
# test tools and Ray (the Ray tests start a 2-CPU local cluster; Ray does not depend on torch).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.zcfast-installed
SOURCES := $(shell find csrc zcfast kernels -name '*.cpp' -o -name '*.hpp' -o -name '*.cu' 2>/dev/null) \
           setup.py pyproject.toml CMakeLists.txt

.PHONY: setup test demo bench clean check-install

$(STAMP): $(SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[test,ray]"
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -ra

# sdist -> wheel -> install into a clean venv -> zcfast info / score / correlate (what CI runs)
check-install: $(STAMP)
	bash scripts/check_install.sh

demo: $(STAMP)
	mkdir -p out
	$(BIN)/zcfast score --dataset cifar10 --proxies paper,nwot,params,flops --archs 200 --seed 0 \
		--out out/demo_scores.csv --resume
	$(BIN)/zcfast correlate out/demo_scores.csv --plot out/demo_scatter.png

clean:
	rm -rf build *.egg-info zcfast/_C*.so out
