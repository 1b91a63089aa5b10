#!/usr/bin/env bash
# Builds every service image with ko, offline, into tarballs:
#
#   deploy/k8s/ko-offline.sh [OUTDIR]       (default: a temporary directory)
#
# ko needs a base image, and a registry is out of reach here. ko looks a base
# image named by digest up in its local cache ($KOCACHE/img, an OCI layout)
# before it goes to the network, so this script seeds that cache:
#
#   1. ko and crane are built from the Go module proxy once per machine into
#      a cache directory (about three minutes);
#   2. a minimal static base is assembled from files on this machine — the
#      CA bundle, a passwd/group with the non-root user 65532 the manifests
#      run as, /tmp — the contents of distroless/static that a static Go
#      binary uses; its digest depends only on those files;
#   3. the base goes through a registry on 127.0.0.1 (crane's, in memory,
#      stopped right after) into $KOCACHE/img, and ko builds with
#      KO_DEFAULTBASEIMAGE=<unreachable name>@<digest>, which can only be
#      satisfied from the cache.
#
# Release images use the base skaffold.yaml names (distroless, pulled by the
# build machine); this checks, offline, that every service builds into an
# image that runs as 65532 with the binary as its entrypoint.
#
# Environment: KO_VERSION, CRANE_VERSION, HERALD_CACHE as in istioctl.sh.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
ko_version=${KO_VERSION:-v0.19.1}
crane_version=${CRANE_VERSION:-v0.22.1}
cache=${HERALD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/herald}
tools=$cache/ko-$ko_version-crane-$crane_version
out=${1:-$(mktemp -d)}
mkdir -p "$out"

work=$(mktemp -d)
registry_pid=
cleanup() {
	if [[ -n $registry_pid ]]; then kill "$registry_pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

if [[ ! -x $tools/ko || ! -x $tools/crane ]]; then
	echo "building ko $ko_version and crane $crane_version into $tools (once per machine)" >&2
	start=$SECONDS
	mkdir -p "$cache"
	for pkg in "github.com/google/ko@$ko_version" "github.com/google/go-containerregistry/cmd/crane@$crane_version"; do
		(cd "$work" && GOBIN="$work/bin" GOFLAGS=-buildvcs=false CGO_ENABLED=0 go install "$pkg")
	done
	mkdir -p "$tools"
	mv "$work/bin/ko" "$work/bin/crane" "$tools/"
	echo "built in $((SECONDS - start))s" >&2
fi
ko=$tools/ko
crane=$tools/crane

# The base image's one layer, byte for byte reproducible.
base=$work/base
mkdir -p "$base/etc/ssl/certs" "$base/tmp" "$base/home/nonroot"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$base/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$base/etc/group"
cp /etc/ssl/certs/ca-certificates.crt "$base/etc/ssl/certs/"
chmod 1777 "$base/tmp"
chmod 0755 "$base/home/nonroot" "$base/etc" "$base/etc/ssl" "$base/etc/ssl/certs"
tar --owner=0 --group=0 --numeric-owner --mtime=@0 --sort=name -cf "$work/layer.tar" -C "$base" .

# Seed ko's cache through a registry on the loopback interface.
: >"$work/registry.log"
"$crane" registry serve --address 127.0.0.1:0 >>"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 50); do
	port=$(sed -n 's/.*serving on port \([0-9]*\).*/\1/p' "$work/registry.log" || true)
	[[ -n $port ]] && break
	sleep 0.1
done
[[ -n ${port:-} ]] || { cat "$work/registry.log" >&2; echo "crane registry did not start" >&2; exit 1; }
repo=127.0.0.1:$port/herald/static
"$crane" append --insecure --oci-empty-base -f "$work/layer.tar" -t "$repo:layer" >/dev/null 2>&1
"$crane" mutate --insecure "$repo:layer" --user 65532:65532 --set-platform linux/amd64 -t "$repo:nonroot" >/dev/null 2>&1
digest=$("$crane" digest --insecure "$repo:nonroot")
export KOCACHE=$cache/kocache
mkdir -p "$KOCACHE"
"$crane" pull --insecure --format=oci "$repo@$digest" "$KOCACHE/img"
kill "$registry_pid"
wait "$registry_pid" 2>/dev/null || true
registry_pid=
echo "base image seeded into $KOCACHE/img as $digest" >&2

# registry.invalid cannot resolve: the base can only come from the cache.
export KO_DEFAULTBASEIMAGE=registry.invalid/herald/static@$digest
export KO_DOCKER_REPO=registry.invalid/herald
export GOFLAGS=-buildvcs=false
cd "$root"
for svc in ingest recommend render dispatch; do
	start=$SECONDS
	"$ko" build --push=false --bare --platform=linux/amd64 --sbom=none \
		--tarball="$out/$svc.tar" "./$svc" >"$work/ko-$svc.log" 2>&1 ||
		{ cat "$work/ko-$svc.log" >&2; echo "$svc: ko build failed" >&2; exit 1; }
	cfg=$(tar -xOf "$out/$svc.tar" manifest.json | sed -n 's/.*"Config":"\([^"]*\)".*/\1/p')
	tar -xOf "$out/$svc.tar" "$cfg" | grep -q '"User":"65532:65532"' ||
		{ echo "$svc: image does not run as 65532" >&2; exit 1; }
	tar -xOf "$out/$svc.tar" "$cfg" | grep -q "\"Entrypoint\":\[\"/ko-app/$svc\"\]" ||
		{ echo "$svc: entrypoint is not /ko-app/$svc" >&2; exit 1; }
	echo "$svc: $out/$svc.tar ($(du -h "$out/$svc.tar" | cut -f1), $((SECONDS - start))s)" >&2
done
