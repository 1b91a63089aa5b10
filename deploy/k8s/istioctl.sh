#!/usr/bin/env bash
# Runs Istio's own validators over Herald's rendered overlays, offline:
#
#   deploy/k8s/istioctl.sh [overlay...]     (default: every overlay)
#
# istioctl is built from the Go module proxy (istio.io/istio) once per
# machine into a cache directory, which takes about seven minutes on two
# cores (6m57s measured, 105 MB); later runs reuse the binary and take about
# a second. Each overlay is rendered with the same
# kustomize Go API the manifest tests use, then checked with
# `istioctl validate` (schema and semantic checks of every Istio resource,
# plus the Deployment/Service conventions Istio relies on) and
# `istioctl analyze --use-kube=false` (cross-resource analysis: gateways,
# hosts, selectors, mTLS, policies) against the mesh config Herald expects
# (mesh-config.yaml).
#
# Environment:
#   ISTIO_MODULE_VERSION  istio.io/istio module version to build
#   HERALD_CACHE          cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/herald)
#   ISTIOCTL              use this istioctl binary instead of building one
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
version=${ISTIO_MODULE_VERSION:-v0.0.0-20260827124520-eed52ebb66ad}
cache=${HERALD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/herald}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

istioctl=${ISTIOCTL:-$cache/istioctl-$version/istioctl}
if [[ ! -x $istioctl ]]; then
	echo "building istioctl $version into $(dirname "$istioctl") (about 7 minutes, once per machine)" >&2
	start=$SECONDS
	mkdir -p "$cache"
	# go install pkg@version builds outside Herald's module, so Herald's
	# go.mod is neither read nor changed.
	(cd "$tmp" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOBIN="$tmp/bin" \
		go install -trimpath -ldflags=-s "istio.io/istio/istioctl/cmd/istioctl@$version")
	mkdir -p "$(dirname "$istioctl")"
	cp "$tmp/bin/istioctl" "$istioctl.new"
	mv "$istioctl.new" "$istioctl" # atomic: a half-built binary is never used
	echo "built istioctl in $((SECONDS - start))s" >&2
fi

overlays=("$@")
if [[ ${#overlays[@]} -eq 0 ]]; then
	for d in "$here"/overlays/*/; do
		overlays+=("$(basename "$d")")
	done
fi

out=$tmp/rendered
(cd "$root" && go run ./deploy/k8s/render -out "$out" "${overlays[@]}")

status=0
for o in "${overlays[@]}"; do
	f=$out/$o.yaml
	echo "== $o: istioctl validate" >&2
	if ! "$istioctl" validate --referential -f "$f"; then
		status=1
	fi
	echo "== $o: istioctl analyze" >&2
	# --failure-threshold Info: any message at all, including an Info, fails
	# the check; the manifests are kept free of every finding.
	if ! "$istioctl" analyze --use-kube=false --all-namespaces --failure-threshold Info \
		--meshConfigFile "$here/mesh-config.yaml" "$f"; then
		status=1
	fi
done
exit $status
