#!/usr/bin/env bash
# Regenerates kasa_cri_pb2.py from kasa_cri.proto with Debian's protoc (protobuf-compiler),
# the version that matches Debian's python3-protobuf the client runs with.
set -euo pipefail
cd "$(dirname "$0")"
protoc --python_out=. kasa_cri.proto
