// swift-tools-version:6.0
import PackageDescription

// One target per concern; lower targets know nothing of the ones above them
// (docs/architecture.md has the map).
let package = Package(
    name: "Kasa",
    products: [
        .executable(name: "kasa-vmm", targets: ["kasa-vmm"]),
        .executable(name: "kata-runtime", targets: ["kata-runtime"]),
        .executable(name: "containerd-shim-kata-v2", targets: ["containerd-shim-kata-v2"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // The shim's ttrpc server (TTRPCNIO).
        .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
        // containerd's shim API messages (ShimProtocol); the agent's package uses it too.
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        // SHA-256 for the image cache's content keys (Runtime.ContentHash): BoringSSL's is
        // ten times the speed of a hand-written one (docs/architecture.md).
        .package(url: "https://github.com/apple/swift-crypto", from: "3.0.0"),
        // The guest agent's package: its protocol (AgentProtocol: agent.proto, the ttrpc
        // codec and client) is how the Runtime talks to kata-agent. The VMM never links it.
        .package(path: "guest-agent"),
    ],
    targets: [
        .target(name: "CKVM"),
        .target(name: "CLinux"),
        .target(name: "KVM", dependencies: ["CKVM", .product(name: "HostOS", package: "guest-agent")]),
        .target(name: "GuestMemory", dependencies: ["CLinux"]),
        // Guest memory and vCPU rules and defaults, shared by kasa-vmm and the runtime.
        .target(name: "MachineSize"),
        // A snapshot's files and their encoding (the VMM fills in what each layer saves).
        .target(name: "Snapshot", dependencies: [.product(name: "HostOS", package: "guest-agent")]),
        .target(name: "Boot", dependencies: ["GuestMemory", "MachineSize"]),
        .target(name: "LegacyDevices", dependencies: [.product(name: "HostOS", package: "guest-agent")]),
        // A FUSE server exporting one host directory to a guest (virtio-fs): names resolved
        // beneath held descriptors with openat2, never by host path.
        .target(name: "SharedFileSystem", dependencies: ["CLinux"]),
        .target(name: "Virtio", dependencies: ["GuestMemory", "CLinux", "SharedFileSystem", .product(name: "HostOS", package: "guest-agent")]),
        .target(name: "VMM", dependencies: ["KVM", "CKVM", "GuestMemory", "Boot", "LegacyDevices", "Virtio", "SharedFileSystem", "CLinux", "MachineSize", "Snapshot", .product(name: "HostOS", package: "guest-agent")]),
        // Plays the guest driver in plain memory (no KVM): VirtioTests and kasa-device-bench.
        .target(name: "VirtioMockDriver", dependencies: ["Virtio", "GuestMemory", "CLinux", .product(name: "HostOS", package: "guest-agent")]),
        // Device-model throughput (virtio-blk, virtio-vsock) through the transport (docs/performance.md).
        .executableTarget(
            name: "kasa-device-bench",
            dependencies: ["VirtioMockDriver", "Virtio", "GuestMemory", "CLinux",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // The devices' guest-facing surface driven by bytes, for libFuzzer (kasa-device-fuzz,
        // fuzz/run-device-fuzz.sh) and the unit tests' replay of the corpus.
        .target(name: "DeviceFuzzing", dependencies: ["Virtio", "SharedFileSystem", "GuestMemory", "VirtioMockDriver", "CLinux",
                                                      .product(name: "HostOS", package: "guest-agent")]),
        .executableTarget(name: "kasa-device-fuzz", dependencies: ["DeviceFuzzing"]),
        // A small JSON reader, so that kasa-vmm need not link Foundation (docs/performance.md).
        // kasa-vmm's threads after set-up: per-role seccomp filters (libseccomp through the agent's
        // CSeccomp wrapper) and capabilities.
        .target(name: "Confinement", dependencies: ["CKVM", "CLinux", .product(name: "CSeccomp", package: "guest-agent"),
                                                    .product(name: "HostOS", package: "guest-agent")]),
        .testTarget(name: "ConfinementTests", dependencies: ["Confinement", "CKVM", .product(name: "HostOS", package: "guest-agent")]),
        .target(name: "KasaJSON"),
        .executableTarget(
            name: "kasa-vmm",
            // No ArgumentParser: it linked FoundationEssentials in and cost ~1.5 MiB resident;
            // the command line is parsed by hand (CommandLineOptions.swift).
            dependencies: ["VMM", "Boot", "KVM", "Virtio", "SharedFileSystem", "KasaJSON", "CLinux", "MachineSize", "Confinement", .product(name: "HostOS", package: "guest-agent")],
            // The Swift runtime linked in (-static-stdlib), by lld with packed relative
            // relocations (needs glibc 2.36+ at run time): fewer resident pages than the
            // dynamic runtime (docs/performance.md, "VMM start to first guest byte").
            linkerSettings: [.unsafeFlags([
                "-static-stdlib", "-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs",
            ], .when(platforms: [.linux]))]
        ),
        // configuration.toml's subset (docs/configuration.md).
        .target(name: "KasaTOML"),
        // Sandboxes and containers on the host: kasa-vmm processes, the rootfs image cache,
        // the agent dial, streams and teardown; used by kata-runtime (and the shim).
        .target(name: "Runtime", dependencies: ["KasaTOML", "KasaJSON", "CLinux", "KVM", "MachineSize", .product(name: "HostOS", package: "guest-agent"),
                                                .product(name: "Crypto", package: "swift-crypto"),
                                                .product(name: "AgentProtocol", package: "guest-agent"),
                                                .product(name: "Netlink", package: "guest-agent"),
                                                .product(name: "AgentNetwork", package: "guest-agent")]),
        .executableTarget(
            name: "kata-runtime",
            dependencies: ["Runtime", "KVM", "CLinux", "KasaJSON", "KasaTOML", "MachineSize", .product(name: "HostOS", package: "guest-agent"),
                           .product(name: "AgentProtocol", package: "guest-agent"),
                           .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // containerd's shim v2 API, events and runtime options: our .proto files with
        // containerd's field numbers (Proto/FIELDS.md), code generated by scripts/regenerate-proto.sh.
        .target(name: "ShimProtocol", dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
                exclude: ["Proto"]),
        .testTarget(name: "ShimProtocolTests", dependencies: ["ShimProtocol", .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        // ttrpc served with SwiftNIO (containerd-shim-kata-v2), framing from AgentProtocol.
        .target(name: "TTRPCNIO", dependencies: [
            .product(name: "AgentProtocol", package: "guest-agent"),
            .product(name: "HostOS", package: "guest-agent"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        // containerd-shim-kata-v2's logic: the task service, its table and events.
        .target(name: "Shim", dependencies: ["ShimProtocol", "TTRPCNIO", "Runtime", "KasaJSON", .product(name: "HostOS", package: "guest-agent"),
                                             .product(name: "AgentProtocol", package: "guest-agent"),
                                             .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        .executableTarget(
            name: "containerd-shim-kata-v2",
            dependencies: ["Shim", "ShimProtocol", "TTRPCNIO", "Runtime", "KVM", "CLinux", .product(name: "HostOS", package: "guest-agent"),
                           .product(name: "AgentProtocol", package: "guest-agent"),
                           .product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        .testTarget(name: "ShimTests", dependencies: ["Shim", "ShimProtocol", "TTRPCNIO", "Runtime", .product(name: "HostOS", package: "guest-agent"),
                                                      .product(name: "AgentProtocol", package: "guest-agent"),
                                                      .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        .testTarget(name: "TTRPCNIOTests", dependencies: ["TTRPCNIO", .product(name: "AgentProtocol", package: "guest-agent"), .product(name: "HostOS", package: "guest-agent")]),
        .testTarget(name: "KasaJSONTests", dependencies: ["KasaJSON"]),
        .testTarget(name: "KasaTOMLTests", dependencies: ["KasaTOML"]),
        .testTarget(name: "RuntimeTests", dependencies: ["Runtime", "KasaJSON", "KasaTOML", "CLinux", .product(name: "HostOS", package: "guest-agent"),
                                                         .product(name: "AgentProtocol", package: "guest-agent")]),
        .testTarget(name: "GuestMemoryTests", dependencies: ["GuestMemory"]),
        .testTarget(name: "SharedFileSystemTests", dependencies: ["SharedFileSystem", "CLinux"]),
        .testTarget(name: "SnapshotTests", dependencies: ["Snapshot"]),
        .testTarget(name: "BootTests", dependencies: ["Boot", "GuestMemory"]),
        .testTarget(name: "LegacyDevicesTests", dependencies: ["LegacyDevices", .product(name: "HostOS", package: "guest-agent")]),
        .testTarget(name: "VirtioTests", dependencies: ["Virtio", "SharedFileSystem", "GuestMemory", "VirtioMockDriver", "DeviceFuzzing",
                                                   .product(name: "HostOS", package: "guest-agent")]),
        // Boots tiny guests (assembled from Tests/guests with gcc) and the real kernel under KVM,
        // and drives kata-agent in a VM over vsock (AgentProtocol).
        .testTarget(name: "VMMIntegrationTests", dependencies: ["VMM", "KVM", "SharedFileSystem", "CLinux", "Boot", "GuestMemory", "LegacyDevices", "Snapshot", .product(name: "HostOS", package: "guest-agent"),
                                                                .product(name: "AgentProtocol", package: "guest-agent")]),
    ],
    swiftLanguageModes: [.v6]
)
