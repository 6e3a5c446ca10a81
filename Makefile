# The two commands of the README. Both set up what they need first (scripts/setup.sh).
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-all lint
setup:
	./scripts/setup.sh

# The main job: simulate a dense ResNet-18 CIFAR training step on both bundled presets.
demo: setup
	$(BIN)/accelsim simulate --network resnet18 --hw hw_configs/fp8_tensor_edge_28nm.yaml --out reports/demo/dense-fp8
	$(BIN)/accelsim simulate --network resnet18 --hw hw_configs/systolic_32x32_45nm.yaml --out reports/demo/dense-systolic
	@echo "report: reports/demo/"

# The fast default test set (includes ruff); `make test-all` adds the slow tests.
# pytest's exit 5 (no tests collected) is turned into a failure: a run that tests nothing fails.
test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q; s=$$?; if [ $$s -eq 5 ]; then echo "no tests collected" >&2; exit 1; fi; exit $$s

test-all: setup
	$(BIN)/python -m pytest -q -m "slow or not slow"

lint: setup
	$(BIN)/ruff check .
