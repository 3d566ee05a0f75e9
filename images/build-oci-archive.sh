#!/usr/bin/env bash
# Packs a root filesystem directory as an OCI image archive that `ctr images import`
# loads: oci-layout, index.json, and blobs/sha256/ holding two uncompressed layers (the
# directory, then a layer adding /etc/kasa-image with NAME in it, so an unpacked image
# shows that the snapshotter stacked both), the image config and the manifest.
#
#   images/build-oci-archive.sh ROOTFS_DIR OUTPUT.tar NAME [CMD_JSON]
#   e.g. images/build-oci-archive.sh "$(images/build-busybox-rootfs.sh | tail -n 1)" /tmp/busybox.tar docker.io/kasa/busybox:test
#
# CMD_JSON is the image's command as a JSON array (default ["sh"]); a pod's sandbox
# ("pause") image needs one that never returns, e.g. '["sh", "-c", "while true; do sleep 3600; done"]'.
#
# The archive's index names the image NAME (annotation io.containerd.image.name) and
# its tag (org.opencontainers.image.ref.name). linux/amd64 only. Nothing is cached.
set -euo pipefail

die() { echo "build-oci-archive: error: $*" >&2; exit 1; }
[ $# -eq 3 ] || [ $# -eq 4 ] || die "usage: $0 ROOTFS_DIR OUTPUT.tar NAME [CMD_JSON]"
rootfs=$1 output=$2 name=$3 cmd=${4:-'["sh"]'}
python3 -c 'import json, sys; c = json.loads(sys.argv[1]); assert isinstance(c, list) and c and all(isinstance(w, str) for w in c)' "$cmd" 2>/dev/null ||
    die "CMD_JSON must be a non-empty JSON array of strings, got '$cmd'"
[ -d "$rootfs" ] || die "$rootfs is not a directory"
case "$name" in *:*) tag=${name##*:} ;; *) die "NAME must carry a tag (registry/repository:tag), got '$name'" ;; esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/archive/blobs/sha256" "$work/extra/etc"

# Adds file $1 as a blob; prints "digest size".
add_blob() {
    local digest size
    digest=$(sha256sum "$1" | cut -d' ' -f1)
    size=$(stat -c %s "$1")
    mv "$1" "$work/archive/blobs/sha256/$digest"
    echo "$digest $size"
}

# Numeric owners and a fixed order keep the layer's digest stable for the same tree.
tar --numeric-owner --sort=name -C "$rootfs" -cf "$work/base.tar" .
printf '%s\n' "$name" > "$work/extra/etc/kasa-image"
tar --numeric-owner --sort=name -C "$work/extra" -cf "$work/extra.tar" etc/kasa-image
read -r base_digest base_size < <(add_blob "$work/base.tar")
read -r extra_digest extra_size < <(add_blob "$work/extra.tar")

cat > "$work/config.json" <<JSON
{"architecture": "amd64", "os": "linux",
 "config": {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": $cmd, "WorkingDir": "/"},
 "rootfs": {"type": "layers", "diff_ids": ["sha256:$base_digest", "sha256:$extra_digest"]}}
JSON
read -r config_digest config_size < <(add_blob "$work/config.json")

cat > "$work/manifest.json" <<JSON
{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
 "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:$config_digest", "size": $config_size},
 "layers": [
  {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:$base_digest", "size": $base_size},
  {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:$extra_digest", "size": $extra_size}]}
JSON
read -r manifest_digest manifest_size < <(add_blob "$work/manifest.json")

cat > "$work/archive/index.json" <<JSON
{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
 "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:$manifest_digest", "size": $manifest_size,
   "platform": {"architecture": "amd64", "os": "linux"},
   "annotations": {"io.containerd.image.name": "$name", "org.opencontainers.image.ref.name": "$tag"}}]}
JSON
echo '{"imageLayoutVersion": "1.0.0"}' > "$work/archive/oci-layout"
tar -C "$work/archive" -cf "$output.tmp.$$" oci-layout index.json blobs
mv -f "$output.tmp.$$" "$output"
echo "$output"
