# One-command entry points for a fresh machine (Python 3.9+, a C++17 compiler, cmake >= 3.18).
#   make demo   score 350 NB201 cells on the bundled CIFAR-10 images, print the correlation table,
#               then a zero-cost search result (aging evolution with and without synflow warmup)
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

.PHONY: setup test demo demo-full clean check-install

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

# The main job, about 3 minutes after install on a 2-core CPU (README; bench/results/demo_timing.md): synflow (the paper's
# best single proxy), nwot, meco (with az_nas the strongest single proxy in
# bench/results/modern_3000; a forward pass, like nwot), params and flops on
# $(DEMO_CELLS) cells, enough for 95% intervals of about +-0.05; the correlation
# table, then one zero-cost search result: aging evolution on NB201 CIFAR-100 with and without a
# synflow warmup, 10 seeds, 50 trained models (synflow of all 15,625 cells from
# bench/results/synflow_all, made by bench/study_synflow_all.py). demo-full adds the paper's other
# five proxies (a backward pass each, grasp a double backward: several times the demo's cost
# per cell on a CPU), on 200 cells.
DEMO_CELLS ?= 350
DEMO_PROXIES ?= synflow,nwot,meco,params,flops
DEMO_OUT ?= out/demo
DEMO_SEARCH = $(BIN)/zcfast search --algo ae --seeds 10 --budget 50 --no-progress \
	--cache-dir out/demo_cache --scores bench/results/synflow_all/synflow_params_flops_cifar100.csv

demo: $(STAMP)
	mkdir -p $(dir $(DEMO_OUT)) out
	$(BIN)/zcfast score --dataset cifar10 --proxies $(DEMO_PROXIES) --archs $(DEMO_CELLS) --seed 0 \
		--out $(DEMO_OUT)_scores.csv --resume
	$(BIN)/zcfast correlate $(DEMO_OUT)_scores.csv --plot $(DEMO_OUT)_scatter.png
	$(DEMO_SEARCH) --out out/demo_search_ae.jsonl --resume
	$(DEMO_SEARCH) --warmup 1000 --proxy synflow --out out/demo_search_ae_warmup.jsonl --resume

demo-full: DEMO_PROXIES = paper,nwot,meco,params,flops
demo-full: DEMO_CELLS = 200
demo-full: DEMO_OUT = out/demo_full
demo-full: demo

clean:
	rm -rf build *.egg-info zcfast/_C*.so out
