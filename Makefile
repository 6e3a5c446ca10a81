# The two commands of the README. Both set up what they need first (scripts/setup.sh).
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint
setup:
	./scripts/setup.sh

# The main job: the demo pipeline, end to end (scripts/demo.sh): short real training runs of six
# sparsity schemes, replays on both presets, a hardware sweep and the report in reports/demo/.
demo: setup
	./scripts/demo.sh

# The whole test suite (includes ruff and real short training runs): what CI runs.
# pytest's exit 5 (no tests collected) is turned into a failure: a run that tests nothing fails.
test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q; s=$$?; if [ $$s -eq 5 ]; then echo "no tests collected" >&2; exit 1; fi; exit $$s

lint: setup
	$(BIN)/ruff check .
