# The two commands (see README): `make run` and `make test`. Everything else is a helper they call.
.PHONY: run test setup bench bench-rfm lint package fuzz load
PORT ?= 8000

setup:
	@bash scripts/setup.sh

## Sets everything up, then serves the API on 127.0.0.1:$(PORT) with DynamoDB Local and demo data.
run: setup
	PORT=$(PORT) .venv/bin/python -m chalicelib.cli serve

## Sets everything up, then runs the lints and the whole test suite (what CI runs).
test: setup
	bash scripts/test.sh

## The deployable stack: dist/template.json + dist/artifacts/*.zip (deploying: docs/operations.md), checked for
## REGION (default ap-east-1; e.g. REGION=cn-north-1 for the China partition).
package: setup
	REGION=$(REGION) bash scripts/package.sh

bench: setup
	.venv/bin/python -m bench

## The nightly RFM's compute per 1M members and a whole night on DynamoDB Local (BENCH_RFM_MEMBERS, default 20000).
bench-rfm: setup
	.venv/bin/python -m bench.rfm

## The long runs CI keeps short: schema fuzzing with a fresh seed; the retry storm (add ARGS=--faults).
fuzz: setup
	bash scripts/fuzz.sh

load: setup
	bash scripts/load.sh $(ARGS)

lint: setup
	.venv/bin/ruff check .
	.venv/bin/lint-imports
