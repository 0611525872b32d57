# `make images` and `make deploy-check`. Included from the top-level Makefile.
#
# No container engine and no cluster run in CI, so manifests stop at render + schema check:
# deploy-check renders every overlay, alone and with every component, with kubectl's built-in
# kustomize, and checks the result (and the *.example.yaml files applied by hand) against the
# Kubernetes JSON schemas of K8S_VERSION with kubernetes-validate (PyPI, pinned, installed once
# into .deploy-tools/), offline and with --strict, so that unknown or misspelt fields fail; then
# k8s/check.py checks what schemas cannot: the service token and the NetworkPolicies.

deploy_saved_default_goal := $(.DEFAULT_GOAL)

ENGINE ?= docker
IMAGE ?= oneword
TAG ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
# The oldest Kubernetes the manifests support: the native preStop sleep needs 1.30.
K8S_VERSION ?= 1.30.0
KUBERNETES_VALIDATE := kubernetes-validate==1.37.0
DEPLOY_TOOLS := .deploy-tools
# Holds the package it was installed from, so changing the pin reinstalls.
DEPLOY_STAMP := $(DEPLOY_TOOLS)/.installed
DEPLOY_RENDERED := $(DEPLOY_TOOLS)/rendered
OVERLAYS := $(wildcard deploy/k8s/overlays/*)
COMPONENTS := $(wildcard deploy/k8s/components/*)
DEPLOY_EXAMPLES := $(wildcard deploy/k8s/*.example.yaml deploy/k8s/components/*/*.example.yaml)

.PHONY: images deploy-check deploy-tools deploy-kubectl

## images: build the CPU and the CUDA image (ENGINE=docker or podman; IMAGE, TAG; needs a container engine)
images:
	$(ENGINE) build -f deploy/docker/Dockerfile -t $(IMAGE):$(TAG) .
	$(ENGINE) build -f deploy/docker/Dockerfile.cuda -t $(IMAGE)-cuda:$(TAG) .

## deploy-check: render every Kubernetes overlay (with and without each component) and validate it offline
deploy-check: deploy-kubectl deploy-tools
	@set -e; rm -rf $(DEPLOY_RENDERED); mkdir -p $(DEPLOY_RENDERED); \
	for overlay in $(OVERLAYS); do \
		name=$$(basename $$overlay); \
		kubectl kustomize $$overlay > $(DEPLOY_RENDERED)/$$name.yaml; \
		for component in $(COMPONENTS); do \
			dir=$(DEPLOY_RENDERED)/$$name+$$(basename $$component); mkdir -p $$dir; \
			printf 'resources: [../../../%s]\ncomponents: [../../../%s]\n' $$overlay $$component \
				> $$dir/kustomization.yaml; \
			kubectl kustomize $$dir > $$dir.yaml; \
		done; \
	done; \
	for file in $(DEPLOY_RENDERED)/*.yaml $(DEPLOY_EXAMPLES); do \
		echo "$$file: $$(grep -c '^kind:' $$file) objects"; \
	done; \
	echo "validating against Kubernetes $(K8S_VERSION) (--strict)"; \
	$(DEPLOY_TOOLS)/venv/bin/kubernetes-validate --quiet --strict -k $(K8S_VERSION) \
		$(DEPLOY_RENDERED)/*.yaml $(DEPLOY_EXAMPLES); \
	$(DEPLOY_TOOLS)/venv/bin/python deploy/k8s/check.py $(DEPLOY_RENDERED)/*.yaml; \
	echo "deploy-check: all valid"

deploy-kubectl:
	@command -v kubectl >/dev/null || { \
		echo "deploy-check needs kubectl (kustomize is built in); install it from" \
			"https://kubernetes.io/docs/tasks/tools/" >&2; \
		exit 1; }

deploy-tools:
	@if [ "$$(cat $(DEPLOY_STAMP) 2>/dev/null)" != "$(KUBERNETES_VALIDATE)" ]; then \
		echo "installing $(KUBERNETES_VALIDATE) into $(DEPLOY_TOOLS)" && \
		rm -rf $(DEPLOY_TOOLS) && python3 -m venv $(DEPLOY_TOOLS)/venv && \
		$(DEPLOY_TOOLS)/venv/bin/pip install --quiet --disable-pip-version-check $(KUBERNETES_VALIDATE) && \
		echo "$(KUBERNETES_VALIDATE)" > $(DEPLOY_STAMP); \
	fi

.DEFAULT_GOAL := $(deploy_saved_default_goal)
