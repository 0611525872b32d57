# `make images` and `make deploy-check`. Included from the top-level Makefile.
#
# deploy-check renders every overlay with kubectl's built-in kustomize and checks the result
# against the Kubernetes JSON schemas of K8S_VERSION with kubernetes-validate (from PyPI, pinned,
# installed once into .deploy-tools/), offline and with --strict, so that unknown fields fail.

deploy_saved_default_goal := $(.DEFAULT_GOAL)

ENGINE ?= docker
IMAGE ?= oneword
TAG ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
# The oldest Kubernetes the manifests support: the native preStop sleep needs 1.30.
K8S_VERSION ?= 1.30.0
KUBERNETES_VALIDATE := kubernetes-validate==1.37.0
DEPLOY_TOOLS := .deploy-tools
DEPLOY_STAMP := $(DEPLOY_TOOLS)/.installed
OVERLAYS := $(wildcard deploy/k8s/overlays/*)

.PHONY: images deploy-check deploy-tools

## images: build the CPU and the CUDA image (ENGINE=docker or podman; IMAGE, TAG)
images:
	$(ENGINE) build -f deploy/docker/Dockerfile -t $(IMAGE):$(TAG) .
	$(ENGINE) build -f deploy/docker/Dockerfile.cuda -t $(IMAGE)-cuda:$(TAG) .

## deploy-check: render every Kubernetes overlay and validate it against the K8S_VERSION schemas
deploy-check: deploy-tools
	@command -v kubectl >/dev/null || { echo "deploy-check needs kubectl (kustomize is built in): https://kubernetes.io/docs/tasks/tools/" >&2; exit 1; }
	@set -e; for overlay in $(OVERLAYS); do \
		out=$(DEPLOY_TOOLS)/$$(basename $$overlay).yaml; \
		kubectl kustomize $$overlay > $$out; \
		echo "$$overlay: $$(grep -c '^kind:' $$out) objects, validating against Kubernetes $(K8S_VERSION)"; \
		$(DEPLOY_TOOLS)/venv/bin/kubernetes-validate --quiet --strict -k $(K8S_VERSION) $$out; \
	done; \
	out=$(DEPLOY_TOOLS)/cpu-model-pvc.yaml; \
	printf 'resources: [../deploy/k8s/overlays/cpu]\ncomponents: [../deploy/k8s/components/model-pvc]\n' > $(DEPLOY_TOOLS)/kustomization.yaml; \
	kubectl kustomize $(DEPLOY_TOOLS) > $$out; \
	echo "cpu + model-pvc: validating"; \
	$(DEPLOY_TOOLS)/venv/bin/kubernetes-validate --quiet --strict -k $(K8S_VERSION) $$out

deploy-tools:
	@if [ "$$(cat $(DEPLOY_STAMP) 2>/dev/null)" != "$(KUBERNETES_VALIDATE)" ]; then \
		echo "installing $(KUBERNETES_VALIDATE) into $(DEPLOY_TOOLS)" && \
		rm -rf $(DEPLOY_TOOLS) && python3 -m venv $(DEPLOY_TOOLS)/venv && \
		$(DEPLOY_TOOLS)/venv/bin/pip install --quiet --disable-pip-version-check $(KUBERNETES_VALIDATE) && \
		echo "$(KUBERNETES_VALIDATE)" > $(DEPLOY_STAMP); \
	fi

.DEFAULT_GOAL := $(deploy_saved_default_goal)
