#!/usr/bin/env bash
# Regenerates the committed Swift code of Kasa's protobuf messages:
#   guest-agent/Sources/AgentProtocol/Proto/*.proto  (the host<->guest contract)
#     -> guest-agent/Sources/AgentProtocol/Generated/*.pb.swift
#   Sources/ShimProtocol/Proto/*.proto  (containerd's shim API, events, options)
#     -> Sources/ShimProtocol/Generated/*.pb.swift
#
# Messages only (swift-protobuf), never gRPC service code: the ttrpc codec and the
# service plumbing are hand-written.
#
# Idempotent. Uses Debian's protoc (installed with apt-get when missing) and a
# protoc-gen-swift built once from swift-protobuf $SWIFT_PROTOBUF_VERSION into a cache
# directory outside the clone (the first build takes about ten minutes on 2 cores); later
# runs only call protoc. The package itself depends on swift-protobuf for the runtime
# library only, so a normal `swift build` never builds the plugin.
#
# Usage: scripts/regenerate-proto.sh          rewrite Generated/ in place
#        scripts/regenerate-proto.sh --check  exit 1 if Generated/ is not up to date
# Env:   KASA_PROTOC_GEN_SWIFT_CACHE  cache root (default /var/cache/kasa/protoc-gen-swift)
set -euo pipefail

SWIFT_PROTOBUF_VERSION=1.39.0

mode=write
case "${1:-}" in
    "") ;;
    --check) mode=check ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
targets=("$root/guest-agent/Sources/AgentProtocol" "$root/Sources/ShimProtocol")
cache=${KASA_PROTOC_GEN_SWIFT_CACHE:-/var/cache/kasa/protoc-gen-swift}/$SWIFT_PROTOBUF_VERSION
plugin=$cache/bin/protoc-gen-swift

log() { echo "regenerate-proto: $*" >&2; }

# --- protoc (Debian's; libprotobuf-dev carries google/protobuf/*.proto) -------------
wkt_include=/usr/include
if ! command -v protoc >/dev/null || [ ! -f "$wkt_include/google/protobuf/any.proto" ]; then
    log "installing protoc (protobuf-compiler, libprotobuf-dev)"
    if [ "$(id -u)" -ne 0 ]; then
        log "not root: install protobuf-compiler and libprotobuf-dev yourself"; exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler libprotobuf-dev >&2
fi

# --- protoc-gen-swift, built once into the cache --------------------------------------
if [ ! -x "$plugin" ]; then
    log "building protoc-gen-swift $SWIFT_PROTOBUF_VERSION in $cache (first time: ~10 min)"
    src=$cache/src
    mkdir -p "$src/Sources/Placeholder" "$cache/bin"
    # A throwaway package whose only purpose is to make SwiftPM resolve swift-protobuf
    # at exactly the version whose generator output we commit.
    cat > "$src/Package.swift" <<EOF
// swift-tools-version:6.0
// Written by kasa scripts/regenerate-proto.sh; builds protoc-gen-swift only.
import PackageDescription
let package = Package(
    name: "KasaProtocGenSwift",
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf", exact: "$SWIFT_PROTOBUF_VERSION"),
    ],
    targets: [
        .target(name: "Placeholder", dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")]),
    ]
)
EOF
    echo "// intentionally empty" > "$src/Sources/Placeholder/Placeholder.swift"
    start=$(date +%s)
    swift build --package-path "$src" -c release --static-swift-stdlib --product protoc-gen-swift >&2
    bin_path=$(swift build --package-path "$src" -c release --static-swift-stdlib --show-bin-path)
    cp "$bin_path/protoc-gen-swift" "$plugin.tmp.$$"
    mv -f "$plugin.tmp.$$" "$plugin"
    log "protoc-gen-swift built in $(( $(date +%s) - start )) s"
fi

plugin_version=$("$plugin" --version 2>&1 || true)
case "$plugin_version" in
    *"$SWIFT_PROTOBUF_VERSION"*) ;;
    *) log "unexpected plugin version '$plugin_version' at $plugin (want $SWIFT_PROTOBUF_VERSION); delete $cache and rerun"; exit 1 ;;
esac

# --- generate ----------------------------------------------------------------------------
stale=0
generate() {
    local proto_dir=$1/Proto generated_dir=$1/Generated
    local work
    work=$(mktemp -d)
    shopt -s nullglob
    local protos=("$proto_dir"/*.proto)
    if [ ${#protos[@]} -eq 0 ]; then log "no .proto files in $proto_dir"; rm -rf "$work"; exit 1; fi
    local names=()
    for p in "${protos[@]}"; do names+=("$(basename "$p")"); done
    # Sorted, so the invocation (and its output) does not depend on the directory order.
    IFS=$'\n' names=($(printf '%s\n' "${names[@]}" | LC_ALL=C sort)); unset IFS

    (cd "$proto_dir" && LC_ALL=C protoc \
        --plugin=protoc-gen-swift="$plugin" \
        --proto_path=. --proto_path="$wkt_include" \
        --swift_opt=Visibility=Public \
        --swift_opt=FileNaming=DropPath \
        --swift_out="$work" \
        "${names[@]}")

    if [ "$mode" = check ]; then
        if diff -r -u "$generated_dir" "$work" >&2; then
            log "$generated_dir is up to date"
        else
            log "$generated_dir is stale: run scripts/regenerate-proto.sh"; stale=1
        fi
    else
        mkdir -p "$generated_dir"
        # Replace the whole set, so code for a deleted .proto goes away too.
        rm -f "$generated_dir"/*.pb.swift
        cp "$work"/*.pb.swift "$generated_dir"/
        log "wrote $(cd "$generated_dir" && ls *.pb.swift | tr '\n' ' ')"
    fi
    rm -rf "$work"
}

for target in "${targets[@]}"; do generate "$target"; done
exit $stale
