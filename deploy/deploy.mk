# Deploy checks (tests/deploy): their tools live in their own venvs under .venv-deploy/, because
# checkov's pins (boto3/botocore and its own `hcl2` module) conflict with the project's and with
# python-hcl2. `make test` installs them first; tests/deploy finds them through ECHO_DEPLOY_TOOLS.
DEPLOY_TOOLS ?= .venv-deploy
export ECHO_DEPLOY_TOOLS := $(abspath $(DEPLOY_TOOLS))

TEST_PREREQS += $(DEPLOY_TOOLS)/.installed

$(DEPLOY_TOOLS)/.installed: deploy/requirements-checkov.txt deploy/requirements-tools.txt
	@echo "Installing the deploy check tools into $(DEPLOY_TOOLS)/ (checkov, python-hcl2, hadolint, compose)..."
	rm -rf $(DEPLOY_TOOLS)/checkov $(DEPLOY_TOOLS)/tools
	mkdir -p $(DEPLOY_TOOLS)
	@# Self-ignoring, so git and ruff (which honours .gitignore) skip the tool venvs wherever they live.
	echo '*' > $(DEPLOY_TOOLS)/.gitignore
	$(PYTHON) -m venv $(DEPLOY_TOOLS)/checkov
	$(DEPLOY_TOOLS)/checkov/bin/python -m pip install -q --upgrade pip
	$(DEPLOY_TOOLS)/checkov/bin/python -m pip install -q -r deploy/requirements-checkov.txt
	$(PYTHON) -m venv $(DEPLOY_TOOLS)/tools
	$(DEPLOY_TOOLS)/tools/bin/python -m pip install -q --upgrade pip
	$(DEPLOY_TOOLS)/tools/bin/python -m pip install -q -r deploy/requirements-tools.txt
	touch $@

.PHONY: deploy-tools deploy-check

deploy-tools: $(DEPLOY_TOOLS)/.installed ## Install the deploy check tools (.venv-deploy/)

deploy-check: $(VENV)/.dev-installed $(DEPLOY_TOOLS)/.installed ## Run only the offline deploy checks (terraform, checkov, hadolint, compose, ECS)
	$(BIN)/python -m pytest -ra tests/deploy $(PYTEST_ARGS)
