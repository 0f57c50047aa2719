#!/usr/bin/env bash
# Push of a 100 MB one-layer image to a local docker-registry: kiln against
# `skopeo copy` of the same OCI layout, in one run, each tool against a
# fresh registry so neither finds the other's blobs. Prints the times and
# the ratio; record the result in BENCHMARKS.md.
#
#   bench/registry-push.sh [RUNS]      (needs a release build: cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
kiln=${KILN:-target/release/kiln}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# The image: 100 MB of incompressible bytes in one layer.
layout=$work/layout
mkdir -p "$layout/blobs/sha256"
head -c 100000000 /dev/urandom > "$work/layer"
put() { local h; h=$(sha256sum "$1" | cut -c1-64); mv "$1" "$layout/blobs/sha256/$h"; echo "$h"; }
layer=$(put "$work/layer")
printf '%s' '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' > "$work/config"
config_size=$(stat -c %s "$work/config")
config=$(put "$work/config")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":100000000}]}' \
    "$config" "$config_size" "$layer" > "$work/manifest"
manifest_size=$(stat -c %s "$work/manifest")
manifest=$(put "$work/manifest")
echo '{"imageLayoutVersion":"1.0.0"}' > "$layout/oci-layout"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}' \
    "$manifest" "$manifest_size" > "$layout/index.json"

source bench/common.sh

# Milliseconds a command takes.
millis() { local start end; start=$(date +%s%N); "$@" >/dev/null 2>&1; end=$(date +%s%N); echo $(((end - start) / 1000000)); }

kiln_total=0; skopeo_total=0
for run in $(seq "$runs"); do
    fresh_registry
    k=$(millis "$kiln" push "$layout" "127.0.0.1:$port/bench/app:v1")
    fresh_registry
    s=$(millis skopeo copy --dest-tls-verify=false "oci:$layout:v1" "docker://127.0.0.1:$port/bench/app:v1")
    echo "run $run: kiln $k ms, skopeo $s ms"
    kiln_total=$((kiln_total + k)); skopeo_total=$((skopeo_total + s))
done
echo "mean: kiln $((kiln_total / runs)) ms, skopeo $((skopeo_total / runs)) ms, ratio kiln/skopeo $(ratio $kiln_total $skopeo_total)"
