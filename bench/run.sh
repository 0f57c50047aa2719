#!/usr/bin/env bash
# RUN, kiln against buildah bud (vfs storage, chroot isolation), in one run:
#   - a Debian bookworm minbase (mmdebstrap) with
#     `RUN apt-get update && apt-get install -y --no-install-recommends curl`
#     through the machine's mirror: cold, and rebuilt with nothing changed;
#   - a busybox base with 20 trivial RUNs: the per-RUN overhead.
# Both builders pull the base from a docker-registry on 127.0.0.1. Prints
# times and ratios; record the result in BENCHMARKS.md.
#
#   bench/run.sh [RUNS]   (as root, after cargo build --release; needs
#                          docker-registry buildah mmdebstrap busybox-static)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
kiln=$(realpath "${KILN:-target/release/kiln}")
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
export KILN_CACHE_DIR=$work/kiln-cache
source bench/common.sh
fresh_registry

# Milliseconds a command line takes (run by bash, output discarded).
millis() { local start end; start=$(date +%s%N); bash -c "$1" >"$work/last.log" 2>&1 || { cat "$work/last.log" >&2; echo "failed: $1" >&2; exit 1; }; end=$(date +%s%N); echo $(((end - start) / 1000000)); }
mean() { local sum=0; for v in "$@"; do sum=$((sum + v)); done; echo $((sum / $#)); }

# The bases, pushed once: Debian minbase (cached between bench runs) and
# busybox, each as FROM scratch + ADD of a root file system tar.
cache=${XDG_CACHE_HOME:-$HOME/.cache}/kiln-bench
mkdir -p "$cache"
[ -f "$cache/debian-minbase.tar" ] || mmdebstrap --quiet --variant=minbase bookworm "$cache/debian-minbase.tar"
mkdir -p "$work/debian-base" "$work/busybox-base"
cp "$cache/debian-minbase.tar" "$work/debian-base/rootfs.tar"
printf 'FROM scratch\nADD rootfs.tar /\nCMD ["bash"]\n' > "$work/debian-base/Dockerfile"
"$kiln" build -q --allow-net "$host" -t "$host/base/debian:1" --push "$work/debian-base" >/dev/null
mkdir -p "$work/busybox-root/bin"
cp /bin/busybox "$work/busybox-root/bin/busybox"
for dir in usr/bin sbin usr/sbin tmp; do mkdir -p "$work/busybox-root/$dir"; done
chroot "$work/busybox-root" /bin/busybox --install -s
tar -C "$work/busybox-root" -cf "$work/busybox-base/rootfs.tar" .
printf 'FROM scratch\nADD rootfs.tar /\n' > "$work/busybox-base/Dockerfile"
"$kiln" build -q --allow-net "$host" -t "$host/base/busybox:1" --push "$work/busybox-base" >/dev/null

# The Dockerfiles.
mkdir -p "$work/apt" "$work/many"
cp /etc/apt/sources.list.d/debian.sources "$work/apt/"
cp /etc/apt/apt.conf.d/99artifact-registry "$work/apt/" 2>/dev/null || touch "$work/apt/99artifact-registry"
cat > "$work/apt/Dockerfile" <<EOF
FROM $host/base/debian:1
COPY debian.sources /etc/apt/sources.list.d/debian.sources
COPY 99artifact-registry /etc/apt/apt.conf.d/99artifact-registry
RUN rm -f /etc/apt/sources.list && apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*
EOF
{ echo "FROM $host/base/busybox:1"; for i in $(seq 1 20); do echo "RUN echo $i > /f$i"; done; } > "$work/many/Dockerfile"

mirror=$(sed -n 's|^URIs: *http://\([^/]*\).*|\1|p' /etc/apt/sources.list.d/debian.sources | head -n 1)
kiln_build() { echo "$kiln build -q --allow-run --allow-net $host --allow-net $mirror -o oci:$work/out-$1 $work/$1"; }
buildah_build() { echo "buildah --storage-driver vfs --root $work/buildah-$1/root --runroot $work/buildah-$1/run bud --isolation chroot --tls-verify=false -q -t bench-$1 $work/$1"; }

# Plugins compiled into kiln's cache once, as on any installed machine.
"$kiln" build -q --allow-run --allow-net "$host" -o "oci:$work/warm" "$work/many" >/dev/null

for name in apt many; do
    kc=(); ku=(); bc=(); bu=()
    for _ in $(seq 1 "$runs"); do
        rm -rf "$work/out-$name" "$work/buildah-$name"
        kc+=("$(millis "$(kiln_build "$name")")")
        ku+=("$(millis "$(kiln_build "$name")")")
        bc+=("$(millis "$(buildah_build "$name")")")
        bu+=("$(millis "$(buildah_build "$name")")")
    done
    k=$(mean "${kc[@]}"); kk=$(mean "${ku[@]}"); b=$(mean "${bc[@]}"); bb=$(mean "${bu[@]}")
    echo "$name: kiln cold ${k} ms, unchanged ${kk} ms; buildah cold ${b} ms, unchanged ${bb} ms"
    echo "$name: kiln/buildah cold $(ratio "$k" "$b")x, kiln unchanged/cold $(ratio "$kk" "$k")x, buildah unchanged/cold $(ratio "$bb" "$b")x"
done
