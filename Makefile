# gpubox: one command to a GPU deep-learning box on AWS. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -o errexit -o nounset -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)

# Settings given on the make command line become -e settings; ARGS passes anything else.
SETTINGS := type name os ami market max_price retry_until_up move_data confirm delete_data resize substitute allow_other_owner \
	adopt all_boxes minutes max_hours hold no_reboot prune_keep delete_images repair
EXTRA := $(foreach v,$(SETTINGS),$(if $(and $($(v)),$(filter command line,$(origin $(v)))),-e $(v)=$($(v))))
ARGS ?=

PLAYBOOKS := launch configure verify stop start status teardown autostop bake images
.PHONY: help setup $(PLAYBOOKS) demo demo-down test test-deps lint unit aws integration molecule e2e
.DEFAULT_GOAL := help

# Each target's line in `make help` is its `##` comment.
help: ## list the targets
	@awk -F ':.*## ' '/^[a-z][a-z0-9-]*:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

launch: ## launch a box, or reconfigure it: type=g5.xlarge [name=NAME] [os=...] [ami=...|ami=baked] [market=spot]
configure: ## configure the host half again, on a running box: [name=NAME | all_boxes=true]
verify: ## check the GPU, driver and Python environments, with a benchmark: [name=NAME] [repair=true]
stop: ## stop the box: the instance stops billing, its disks and your data are kept: [name=NAME]
start: ## start a stopped box and print its new address: [name=NAME]
status: ## a table of the boxes in the region: owner, type, state, IP, uptime, $/h, auto-stop
teardown: ## terminate the box, keep its data volume: [name=NAME] [confirm=true] [delete_data=true]
autostop: ## change auto-stop on a running box: [name=NAME] minutes=120 | max_hours=8 | hold=3h
bake: ## an image of a configured box's root disk, for `launch ami=baked`: [name=NAME] [no_reboot=true]
images: ## list your baked images and their cost, or prune them: [prune_keep=2] [confirm=true]

$(VENV)/.setup: requirements.txt requirements.yml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/ansible-galaxy collection install -r requirements.yml >/dev/null
	touch $@

setup: $(VENV)/.setup ## make the virtualenv and install Ansible and its collections (the other targets do it first)

$(PLAYBOOKS): $(VENV)/.setup
	$(BIN)/ansible-playbook $@.yml $(EXTRA) $(ARGS)

# The same launch against moto server and a systemd container with sshd (needs Docker; see README).
demo: $(VENV)/.test-deps ## the whole flow against stand-ins (moto server, a systemd container), no AWS account needed
	python scripts/demo.py up

demo-down: $(VENV)/.test-deps ## remove what `make demo` left running
	python scripts/demo.py down

# --- Tests
$(VENV)/.test-deps: $(VENV)/.setup requirements-test.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-test.txt
	touch $@

test-deps: $(VENV)/.test-deps ## install what the tests need: Python packages, Docker, the test image, a browser
	scripts/ensure-docker.sh
	scripts/build-test-image.sh
	tests/tools/ensure-browser.sh

# integration and e2e in one run, side by side (CONTAINER_TESTS below).
test: test-deps lint unit aws molecule ## install what the tests need, then run them all (lint, unit, aws, molecule, integration, e2e)
	$(CONTAINER_TESTS) tests/integration tests/e2e

lint: $(VENV)/.test-deps ## yamllint, ansible-lint (production profile) and ansible-test sanity on gpubox.box
	yamllint --strict .
	ansible-lint --offline
	tests/tools/ansible-test-sanity.sh

unit: $(VENV)/.test-deps ## the unit tests: plugins, planner, filters (no Docker)
	python -m pytest tests/unit -q

# Two workers, each with its own moto server: the suite is mostly Ansible's start-up, which a second core halves.
aws: $(VENV)/.test-deps ## the AWS half's playbooks against moto server
	python -m pytest tests/aws -q -n 2

# The suites on systemd containers run three files at a time: their time is mostly waiting (auto-stop's idle
# minutes, downloads, SSH), not the two cores. Each test makes its own container, moto server and ports.
CONTAINER_TESTS := GPUBOX_REQUIRE_INTEGRATION=1 python -m pytest -q -n 3 --dist loadfile

integration: test-deps ## playbooks against moto server and systemd containers over SSH
	$(CONTAINER_TESTS) tests/integration

molecule: test-deps ## the host roles' molecule scenarios
	molecule --base-config .config/molecule/config.yml test --all

# Last: the stand-in host installs from the wheelhouse molecule's prepare fills (else from the package index).
e2e: test-deps ## the demo and the whole launch flow, JupyterLab through the tunnel in a browser
	$(CONTAINER_TESTS) tests/e2e
