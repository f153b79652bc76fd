# Two entry points for a newcomer: `make demo` and `make test`. Each builds .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-avx2 bench torch-range clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch; an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	# every extra (ONNX, the embedded corpus, plots, TensorBoard) and the test tools
	$(BIN)/pip install --quiet -e '.[all,test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/jeffreys demo --out demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

# The training, extraction, model and loss-kernel tests again on the kernels an AVX2-only
# x86-64 CPU runs (most AMD servers and laptops): oneDNN and ATen held to AVX2, the loss
# kernel built for x86-64-v3 (it follows ATEN_CPU_CAPABILITY). .ci/run calls it.
AVX2_TESTS := tests/test_memory_format.py tests/test_train.py tests/test_resume.py tests/test_finetune.py \
	tests/test_extract.py tests/test_models.py tests/test_losses.py tests/test_loss_kernel.py
test-avx2: $(STAMP)
	ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 $(BIN)/python -m pytest -n 2 -q -p no:randomly $(AVX2_TESTS)

# benchmarks/fullsize.py builds full-size VoxCeleb stand-ins (1.2 M files, an hour and more):
# run it on its own, `.venv/bin/python benchmarks/fullsize.py --help`.
bench: $(STAMP)
	for b in benchmarks/*.py; do case $$b in */fullsize.py) continue;; esac; $(BIN)/python $$b || exit 1; done

# The ends of pyproject's torch range (TORCH_FLOOR, TORCH_CEILING in the script), each in a
# venv of its own under .venvs/ (PyPI's CUDA builds: several GB each), on the fast test
# files; prints JSON. Options: make torch-range ARGS='--fresh --torch 2.11.0' (--help).
torch-range:
	$(PY) tools/torch_range.py $(ARGS)

clean:
	rm -rf $(VENV) demo
