# Two commands do everything:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint services bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,metrics]'
	touch $(STAMP)

## Run the example campaign on embedded defaults: SQLite, in-process broker, outbox folder.
demo: $(STAMP)
	MAIL_FROM='فروشگاه نمونه <news@shop.example>' $(BIN)/dispatcher members import campaigns/members.csv
	$(BIN)/dispatcher campaign validate campaigns/yalda-1405.toml
	MAIL_FROM='فروشگاه نمونه <news@shop.example>' $(BIN)/dispatcher campaign send campaigns/yalda-1405.toml
	@echo "Messages written under ./outbox/ (open one .eml in a mail client)."

## Every check: lint, types, and the tests against real Redis, PostgreSQL and SQLite.
test: $(STAMP)
	scripts/services
	$(BIN)/ruff check dispatcher tests bench unsubscribe_server.py
	$(BIN)/ruff format --check dispatcher tests bench unsubscribe_server.py
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check dispatcher tests bench unsubscribe_server.py
	$(BIN)/mypy
	$(BIN)/lint-imports

services:
	scripts/services

bench: $(STAMP)
	scripts/services --bench
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) outbox dispatcher.db dispatcher.db-* .pytest_cache .mypy_cache .ruff_cache
