#!/usr/bin/env bash
# The Java example's image stage with a 100 MB application, against a local
# docker-registry, in one run: kiln (build --push) against buildah (bud
# --layers + push, vfs, chroot) and against umoci + skopeo:
#   1. cold build+push of the JAR image;
#   2. rebuild+push with nothing changed (time, bytes uploaded);
#   3. layered image (LAYERED=true: dependencies, resources, classes), then
#      one class changed: rebuild+push (time, bytes uploaded);
# with each tool's peak RSS. Prints ratios; record them in BENCHMARKS.md.
#
#   bench/java-image.sh   (as root, after cargo build --release;
#                          needs docker-registry buildah umoci skopeo)
set -euo pipefail
cd "$(dirname "$0")/.."
kiln=$(realpath "${KILN:-target/release/kiln}")
dockerfile=$(realpath examples/java-app/docker/Dockerfile)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
export KILN_CACHE_DIR=$work/kiln-cache

# maven-artifact's output for a 100 MB application: the JAR, and its
# layers (10 dependency JARs of 10 MB, a resource, one class).
ctx=$work/ctx
mkdir -p "$ctx/layers/dependencies" "$ctx/layers/snapshot-dependencies" "$ctx/layers/resources" "$ctx/layers/classes/com/example"
python3 - "$ctx" <<'PY'
import os, random, sys, zipfile
ctx = sys.argv[1]
random.seed(11)
words = ["".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(random.randint(3, 12))) for _ in range(4000)]
def jar(path, megabytes):
    total, i = 0, 0
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        while total < megabytes * 1024 * 1024:
            data = " ".join(random.choice(words) for _ in range(16000)).encode()
            z.writestr(f"org/lib/C{i}.class", data); total += len(data); i += 1
for n in range(10):
    jar(f"{ctx}/layers/dependencies/lib{n}-1.0.jar", 10)
with zipfile.ZipFile(f"{ctx}/sample.jar", "w", zipfile.ZIP_STORED) as out:
    for n in range(10):
        out.write(f"{ctx}/layers/dependencies/lib{n}-1.0.jar", f"BOOT-INF/lib/lib{n}-1.0.jar")
open(f"{ctx}/layers/resources/greeting.txt", "w").write("hello\n")
open(f"{ctx}/layers/classes/com/example/App.class", "wb").write(os.urandom(2048))
PY

source bench/common.sh
fresh_registry

# "MS KB BYTES": wall time, peak RSS of the command's processes, and the
# bytes the registry's storage grew by (what was uploaded).
measure() {
    local before after
    before=$(du -sb "$work/data" 2>/dev/null | cut -f1 || echo 0)
    set -- $(python3 -c '
import resource, subprocess, sys, time
start = time.monotonic()
code = subprocess.run(["bash", "-c", sys.argv[1]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
ms = int((time.monotonic() - start) * 1000)
print(ms, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)' "$1")
    [ "$3" -eq 0 ] || { echo "failed: $1" >&2; exit 1; }
    after=$(du -sb "$work/data" | cut -f1)
    echo "$1 $2 $((after - ${before:-0}))"
}

kiln_build() { echo "'$kiln' build -f '$dockerfile' --build-arg LAYERED=$1 -t $host/bench/kiln:$2 --push '$ctx'"; }
bflags="--root $work/buildah/root --runroot $work/buildah/run --storage-driver vfs"
buildah_build() { echo "buildah $bflags bud --layers --isolation chroot -f '$dockerfile' --build-arg LAYERED=$1 -t bench:$2 '$ctx' && buildah $bflags push --tls-verify=false bench:$2 docker://$host/bench/buildah:$2"; }
umoci_build() {
    local image="$work/umoci:$2" inserts
    if [ "$1" = false ]; then
        inserts="umoci insert --image '$image' '$ctx/sample.jar' /app/sample.jar && umoci config --image '$image' --config.entrypoint java --config.entrypoint -jar --config.entrypoint /app/sample.jar"
    else
        inserts="umoci insert --image '$image' '$ctx/layers/dependencies' /app/lib && umoci insert --image '$image' '$ctx/layers/resources' /app/resources && umoci insert --image '$image' '$ctx/layers/classes' /app/classes && umoci config --image '$image' --config.entrypoint java --config.entrypoint -cp --config.entrypoint '/app/resources:/app/classes:/app/lib/*' --config.entrypoint com.example.App"
    fi
    echo "{ [ -d '$work/umoci' ] || umoci init --layout '$work/umoci'; } && umoci new --image '$image' && $inserts && skopeo copy --dest-tls-verify=false 'oci:$image' docker://$host/bench/umoci:$2"
}

# Compile kiln's plugins into its cache once, as on any installed machine.
measure "$(kiln_build false warm)" >/dev/null; rm -rf "$KILN_CACHE_DIR/builds"

declare -A result
for tool in kiln buildah umoci; do
    result[$tool.cold]=$(measure "$(${tool}_build false 1)")
    result[$tool.same]=$(measure "$(${tool}_build false 2)")
    result[$tool.layered]=$(measure "$(${tool}_build true 3)")
    head -c 2048 /dev/urandom > "$ctx/layers/classes/com/example/App.class"
    result[$tool.class]=$(measure "$(${tool}_build true 4)")
    head -c 2048 /dev/urandom > "$ctx/layers/classes/com/example/App.class"
done

field() { echo "${result[$1]}" | cut -d' ' -f"$2"; }
printf '%-28s %10s %10s %10s\n' "" kiln buildah umoci+skopeo
for case in cold same layered class; do
    label=$(case $case in cold) echo "cold build+push (ms)";; same) echo "nothing changed (ms)";; layered) echo "layered, cold (ms)";; class) echo "one class changed (ms)";; esac)
    printf '%-28s %10s %10s %10s\n' "$label" "$(field kiln.$case 1)" "$(field buildah.$case 1)" "$(field umoci.$case 1)"
done
for case in same class; do
    printf '%-28s %10s %10s %10s\n' "bytes uploaded: $case" "$(field kiln.$case 3)" "$(field buildah.$case 3)" "$(field umoci.$case 3)"
done
peak() { local max=0 v; for c in cold same layered class; do v=$(field "$1.$c" 2); [ "$v" -gt "$max" ] && max=$v; done; echo "$max"; }
printf '%-28s %10s %10s %10s\n' "peak RSS (KiB)" "$(peak kiln)" "$(peak buildah)" "$(peak umoci)"
for case in cold same class; do
    echo "kiln/buildah $case: $(ratio "$(field kiln.$case 1)" "$(field buildah.$case 1)"), kiln/umoci+skopeo $case: $(ratio "$(field kiln.$case 1)" "$(field umoci.$case 1)")"
done
