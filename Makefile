# The two commands a newcomer needs, `make train` and `make test`; each first installs whatever is
# missing (tools/bootstrap.sh: FFmpeg, .venv, the Python packages; for tests also Chromium).
.PHONY: train test lint lock

train:
	@bash tools/bootstrap.sh train
	.venv/bin/accelerate launch --config_file accelerate_config_cpu.yaml run_train.py $(ARGS)

# Two pytest workers (pytest-xdist), one test file each at a time so a file's module fixtures are built once:
# many tests wait on subprocesses and file I/O, which the second worker fills.
PYTEST_WORKERS ?= -n 2 --dist loadfile

test:
	@bash tools/bootstrap.sh test
	.venv/bin/python -m pytest -q $(PYTEST_WORKERS) $(PYTEST_ARGS)

lint:
	@bash tools/bootstrap.sh test
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

# Refresh requirements/constraints.txt (the tested versions) from the newest releases setup.cfg admits.
lock:
	bash tools/lock.sh
