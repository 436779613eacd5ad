# The two commands a newcomer needs; each installs whatever is missing first (tools/bootstrap.sh).
.PHONY: train test setup lint

setup:
	@bash tools/bootstrap.sh

train: setup
	.venv/bin/accelerate launch --config_file accelerate_config_cpu.yaml run_train.py $(ARGS)

test: setup
	.venv/bin/python -m pytest -q $(PYTEST_ARGS)

lint: setup
	.venv/bin/ruff check .
