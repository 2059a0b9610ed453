# The stack's entry points. `make up` runs all four products; `make test` runs every test.
# Everything heavy is skipped when already done, so a second `make up` takes seconds.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# Reuse a cargo target directory outside the checkout when the caller names one.
export CARGO_TARGET_DIR ?= $(CURDIR)/target

.PHONY: help up down clean logs ps audit images test lint fmt

help:
	@echo "make up      build what is missing, start all four products, wait until healthy"
	@echo "             (RECEIPTS=1: also FlagBit -> DocuMint usage receipts)"
	@echo "make down    stop the stack (data is kept)"
	@echo "make clean   stop it and remove its data volumes and built images"
	@echo "make logs    follow the logs;  make ps  list the containers"
	@echo "make audit   check the running containers against the isolation policy"
	@echo "make test    formatting, clippy, unit and container tests"

# `make up RECEIPTS=1` adds FlagBit → DocuMint usage receipts (compose/receipts.yml).
up:
	@scripts/stack.sh up

down:
	@scripts/stack.sh down

clean:
	@scripts/stack.sh clean

logs:
	@scripts/stack.sh logs --follow --tail 100

ps:
	@scripts/stack.sh ps

audit:
	@cargo build --release --locked --quiet -p audit
	@scripts/stack.sh audit

images:
	@scripts/ensure-tools.sh
	@scripts/build-base-images.sh
	@scripts/build-service-images.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

fmt:
	cargo fmt --all

# Container tests need the images; the unit tests don't, but one run keeps it simple.
test: lint images
	scripts/test-cleanup.sh
	cargo nextest run --workspace --locked --no-fail-fast
