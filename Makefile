# Herald's two everyday commands are `make demo` and `make test`.
SHELL := /bin/bash
GO ?= go
PROTOC ?= protoc

.PHONY: demo test bench bench-micro generate check-generate lint k8s-check

## demo: start everything and send a Black Friday job to 100,000 customers
demo:
	@echo "building Herald's local runner (the first run on a machine fetches modules and takes a few minutes)"
	$(GO) run ./deploy/local demo

## test: unit, integration and end-to-end tests against real PostgreSQL and the Pub/Sub emulator
test:
	$(GO) run ./deploy/local env -- $(GO) test -count=1 -p 2 -parallel 4 -timeout 60m ./...

## bench: the whole pipeline on a 1,000,000-recipient job against an SMTP sink
bench:
	$(GO) run ./deploy/local bench

## bench-micro: the Go benchmarks beside the code
bench-micro:
	$(GO) run ./deploy/local env -- $(GO) test -run='^$$' -bench=. -benchmem ./...

## generate: regenerate the wire contract's Go code from its .proto and the Grafana dashboard
generate:
	$(PROTOC) --plugin=protoc-gen-go="$$($(GO) tool -n protoc-gen-go)" -I shared/event/v1 \
		--go_out=shared/event/v1 --go_opt=paths=source_relative shared/event/v1/event.proto
	$(GO) generate ./deploy/monitoring/...

## check-generate: fail if generated code differs from what `make generate` makes
check-generate: generate
	@git diff --exit-code -- shared/event/v1 deploy/monitoring/dashboards || { echo "generated code is stale: run make generate and commit"; exit 1; }

## k8s-check: istioctl validate/analyze of the overlays and offline ko image builds
## (istioctl, ko and crane are built from the Go module proxy once per machine and cached)
k8s-check:
	deploy/k8s/istioctl.sh
	deploy/k8s/ko-offline.sh

## lint: formatting, vet and staticcheck (pinned in tools/go.mod, built from the
## Go module proxy on first use and cached after)
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "run gofmt -w"; exit 1; }
	$(GO) vet ./...
	$(GO) tool -modfile=tools/go.mod staticcheck ./...
