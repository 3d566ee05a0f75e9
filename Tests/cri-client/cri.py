#!/usr/bin/python3
"""A minimal CRI client for Kasa's end-to-end tests: one call to containerd's CRI plugin.

    cri.py SOCKET METHOD REQUEST_JSON

METHOD is a CRI v1 RuntimeService method (RunPodSandbox, CreateContainer, ExecSync, ...);
REQUEST_JSON is the request in protobuf's JSON form (field names as in kasa_cri.proto,
lowerCamelCase or as written). Prints the response as JSON on stdout and exits 0; on a
gRPC error prints "CODE: details" on stderr and exits 1; bad arguments exit 2.

Runs with Debian's /usr/bin/python3 and its python3-grpcio and python3-protobuf packages
(there is no crictl package: docs/kubernetes.md).
"""
import os
import sys

import grpc
from google.protobuf import json_format

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kasa_cri_pb2 as cri  # noqa: E402

# method -> (request type, response type)
METHODS = {
    "Version": (cri.VersionRequest, cri.VersionResponse),
    "RunPodSandbox": (cri.RunPodSandboxRequest, cri.RunPodSandboxResponse),
    "StopPodSandbox": (cri.PodSandboxIdRequest, cri.Empty),
    "RemovePodSandbox": (cri.PodSandboxIdRequest, cri.Empty),
    "PodSandboxStatus": (cri.PodSandboxIdRequest, cri.PodSandboxStatusResponse),
    "CreateContainer": (cri.CreateContainerRequest, cri.CreateContainerResponse),
    "StartContainer": (cri.ContainerIdRequest, cri.Empty),
    "StopContainer": (cri.StopContainerRequest, cri.Empty),
    "RemoveContainer": (cri.ContainerIdRequest, cri.Empty),
    "ContainerStatus": (cri.ContainerIdRequest, cri.ContainerStatusResponse),
    "ExecSync": (cri.ExecSyncRequest, cri.ExecSyncResponse),
}


def main(argv):
    if len(argv) != 4 or argv[2] not in METHODS:
        print(f"usage: {argv[0]} SOCKET METHOD REQUEST_JSON (METHOD: {', '.join(METHODS)})", file=sys.stderr)
        return 2
    socket, method, body = argv[1:]
    request_type, response_type = METHODS[method]
    try:
        request = json_format.Parse(body, request_type())
    except json_format.ParseError as error:
        print(f"bad request for {method}: {error}", file=sys.stderr)
        return 2
    timeout = float(os.environ.get("CRI_TIMEOUT", "600"))
    with grpc.insecure_channel("unix://" + socket) as channel:
        call = channel.unary_unary(f"/runtime.v1.RuntimeService/{method}",
                                   request_serializer=request_type.SerializeToString,
                                   response_deserializer=response_type.FromString)
        try:
            response = call(request, timeout=timeout)
        except grpc.RpcError as error:
            print(f"{error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    print(json_format.MessageToJson(response, preserving_proto_field_name=True, indent=None))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
