# gpubox: one command to a GPU deep-learning box on AWS.
#   make launch type=g5.xlarge [name=NAME] [os=...] [ami=...]   launch or reconfigure a box
#   make stop|start|status|teardown [name=NAME]                 the rest of its life
#   make autostop name=NAME minutes=120|max_hours=8|hold=3h      change auto-stop on a running box
#   make bake name=NAME | make images [prune_keep=2]             an image of a configured box (launch ami=baked); list, prune
#   make demo                                                    the whole flow against stand-ins, no AWS account needed
#   make test                                                    install what the tests need, then run them all
SHELL := /bin/bash
.SHELLFLAGS := -o errexit -o nounset -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)

# Settings given on the make command line become -e settings; ARGS passes anything else.
SETTINGS := type name os ami market max_price retry_until_up move_data confirm delete_data resize substitute allow_other_owner \
	adopt all_boxes minutes max_hours hold no_reboot prune_keep delete_images
EXTRA := $(foreach v,$(SETTINGS),$(if $($(v)),-e $(v)=$($(v))))
ARGS ?=

.PHONY: setup launch stop start status teardown autostop bake images demo demo-down test test-deps lint unit aws integration molecule e2e

$(VENV)/.setup: requirements.txt requirements.yml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/ansible-galaxy collection install -r requirements.yml >/dev/null
	touch $@

setup: $(VENV)/.setup

launch stop start status teardown autostop bake images: $(VENV)/.setup
	$(BIN)/ansible-playbook $@.yml $(EXTRA) $(ARGS)

# The same launch against moto server and a systemd container with sshd (needs Docker; see README).
demo: $(VENV)/.test-deps
	python scripts/demo.py up

demo-down: $(VENV)/.test-deps
	python scripts/demo.py down

# --- Tests
$(VENV)/.test-deps: $(VENV)/.setup requirements-test.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-test.txt
	touch $@

test-deps: $(VENV)/.test-deps
	scripts/ensure-docker.sh
	scripts/build-test-image.sh
	scripts/ensure-browser.sh

test: test-deps lint unit aws integration molecule e2e

lint: $(VENV)/.test-deps
	yamllint --strict .
	ansible-lint --offline

unit: $(VENV)/.test-deps
	python -m pytest tests/unit -q

# Two workers, each with its own moto server: the suite is mostly Ansible's start-up, which a second core halves.
aws: $(VENV)/.test-deps
	python -m pytest tests/aws -q -n 2

integration: test-deps
	GPUBOX_REQUIRE_INTEGRATION=1 python -m pytest tests/integration -q

molecule: test-deps
	molecule test --all

# Last: the stand-in host installs from the wheelhouse molecule's prepare fills (else from the package index).
e2e: test-deps
	GPUBOX_REQUIRE_INTEGRATION=1 python -m pytest tests/e2e -q
