#!/usr/bin/env bash
# Build and push of a 100 MB JAR-like image (FROM scratch + COPY +
# ENTRYPOINT) to a local docker-registry, in one run:
#   - kiln build --push, cold (fresh layer cache) and rebuilt with nothing
#     changed;
#   - buildah bud + buildah push (vfs, chroot);
#   - umoci insert + skopeo copy, the fastest peer measured here.
# Every cold run pushes to a fresh, empty registry. Prints times and the
# ratios; record the result in BENCHMARKS.md.
#
#   bench/build-push.sh [RUNS]   (as root, after cargo build --release;
#                                 needs docker-registry buildah umoci skopeo)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
kiln=$(realpath "${KILN:-target/release/kiln}")
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
export KILN_CACHE_DIR=$work/kiln-cache

# The context: a stored (compressible) zip of 100 MB of class-like text,
# as a fat JAR with uncompressed entries is.
mkdir -p "$work/ctx"
python3 - "$work/ctx/app.jar" <<'PY'
import random, sys, zipfile
random.seed(7)
words = ["".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(random.randint(3, 12))) for _ in range(4000)]
total, i = 0, 0
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_STORED) as jar:
    while total < 100 * 1024 * 1024:
        data = " ".join(random.choice(words) for _ in range(16000)).encode()
        jar.writestr(f"com/example/C{i}.class", data)
        total += len(data); i += 1
PY
printf 'FROM scratch\nCOPY app.jar /app.jar\nENTRYPOINT ["java","-jar","/app.jar"]\n' > "$work/ctx/Dockerfile"

source bench/common.sh

# Milliseconds a command line takes (run by bash, output discarded).
millis() { local start end; start=$(date +%s%N); bash -c "$1" >/dev/null 2>&1 || { echo "failed: $1" >&2; exit 1; }; end=$(date +%s%N); echo $(((end - start) / 1000000)); }

kiln_cmd="'$kiln' build -t $host/bench/kiln:1 --push '$work/ctx'"
buildah_flags="--root $work/buildah/root --runroot $work/buildah/run --storage-driver vfs"
buildah_cmd="buildah $buildah_flags bud --isolation chroot -t bench:1 '$work/ctx' && buildah $buildah_flags push --tls-verify=false bench:1 docker://$host/bench/buildah:1"
umoci_cmd="umoci init --layout '$work/umoci' && umoci new --image '$work/umoci:1' && umoci insert --image '$work/umoci:1' '$work/ctx/app.jar' /app.jar && umoci config --image '$work/umoci:1' --config.entrypoint java --config.entrypoint -jar --config.entrypoint /app.jar && skopeo copy --dest-tls-verify=false 'oci:$work/umoci:1' docker://$host/bench/umoci:1"

# Compile the plugins into kiln's cache once, as any installation does.
fresh_registry; millis "$kiln_cmd" >/dev/null

sum_cold=0; sum_warm=0; sum_buildah=0; sum_umoci=0
for run in $(seq "$runs"); do
    rm -rf "$KILN_CACHE_DIR/builds" "$work/buildah" "$work/umoci"
    fresh_registry; cold=$(millis "$kiln_cmd")
    warm=$(millis "$kiln_cmd")
    fresh_registry; b=$(millis "$buildah_cmd")
    fresh_registry; u=$(millis "$umoci_cmd")
    echo "run $run: kiln cold $cold ms, kiln rebuild $warm ms, buildah $b ms, umoci+skopeo $u ms"
    sum_cold=$((sum_cold + cold)); sum_warm=$((sum_warm + warm)); sum_buildah=$((sum_buildah + b)); sum_umoci=$((sum_umoci + u))
done
echo "mean: kiln cold $((sum_cold / runs)) ms, kiln rebuild $((sum_warm / runs)) ms, buildah $((sum_buildah / runs)) ms, umoci+skopeo $((sum_umoci / runs)) ms"
echo "kiln cold / buildah: $(ratio $sum_cold $sum_buildah) (target <= 0.50)"
echo "kiln cold / umoci+skopeo: $(ratio $sum_cold $sum_umoci) (target <= 0.80)"
echo "kiln rebuild / kiln cold: $(ratio $sum_warm $sum_cold) (target <= 0.05)"
