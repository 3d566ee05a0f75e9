// swift-tools-version:6.0
import PackageDescription

// One target per concern; lower targets know nothing of the ones above them
// (docs/architecture.md has the map).
let package = Package(
    name: "Kasa",
    products: [
        .executable(name: "kasa-vmm", targets: ["kasa-vmm"]),
        .executable(name: "kata-runtime", targets: ["kata-runtime"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // The guest agent's package: its protocol (AgentProtocol: agent.proto, the ttrpc
        // codec and client) is how the Runtime talks to kata-agent. The VMM never links it.
        .package(path: "guest-agent"),
    ],
    targets: [
        .target(name: "CKVM"),
        .target(name: "CLinux"),
        .target(name: "KVM", dependencies: ["CKVM"]),
        .target(name: "GuestMemory"),
        .target(name: "Boot", dependencies: ["GuestMemory"]),
        .target(name: "LegacyDevices"),
        .target(name: "Virtio", dependencies: ["GuestMemory", "LegacyDevices", "CLinux"]),
        .target(name: "VMM", dependencies: ["KVM", "CKVM", "GuestMemory", "Boot", "LegacyDevices", "Virtio"]),
        // Plays the guest driver in plain memory (no KVM): VirtioTests and kasa-device-bench.
        .target(name: "VirtioMockDriver", dependencies: ["Virtio", "GuestMemory", "CLinux"]),
        // Device-model throughput (virtio-blk, virtio-vsock) through the transport (docs/performance.md).
        .executableTarget(
            name: "kasa-device-bench",
            dependencies: ["VirtioMockDriver", "Virtio", "GuestMemory", "CLinux",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // A small JSON reader, so that kasa-vmm need not link Foundation (docs/performance.md).
        .target(name: "KasaJSON"),
        .executableTarget(
            name: "kasa-vmm",
            // No ArgumentParser: it linked FoundationEssentials in and cost ~1.5 MiB resident;
            // the command line is parsed by hand (CommandLineOptions.swift).
            dependencies: ["VMM", "Boot", "KVM", "KasaJSON", "CLinux"],
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
        .target(name: "Runtime", dependencies: ["KasaTOML", "KasaJSON", "CLinux", "KVM",
                                                .product(name: "AgentProtocol", package: "guest-agent")]),
        .executableTarget(
            name: "kata-runtime",
            dependencies: ["Runtime", "KVM", "CLinux", "KasaJSON", "KasaTOML",
                           .product(name: "AgentProtocol", package: "guest-agent"),
                           .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .testTarget(name: "KasaJSONTests", dependencies: ["KasaJSON"]),
        .testTarget(name: "KasaTOMLTests", dependencies: ["KasaTOML"]),
        .testTarget(name: "RuntimeTests", dependencies: ["Runtime", "KasaJSON", "KasaTOML",
                                                         .product(name: "AgentProtocol", package: "guest-agent")]),
        .testTarget(name: "GuestMemoryTests", dependencies: ["GuestMemory"]),
        .testTarget(name: "BootTests", dependencies: ["Boot", "GuestMemory"]),
        .testTarget(name: "LegacyDevicesTests", dependencies: ["LegacyDevices"]),
        .testTarget(name: "VirtioTests", dependencies: ["Virtio", "GuestMemory", "VirtioMockDriver"]),
        // Boots tiny guests (assembled from Tests/guests with gcc) and the real kernel under KVM,
        // and drives kata-agent in a VM over vsock (AgentProtocol).
        .testTarget(name: "VMMIntegrationTests", dependencies: ["VMM", "KVM", "Boot", "GuestMemory",
                                                                .product(name: "AgentProtocol", package: "guest-agent")]),
    ],
    swiftLanguageModes: [.v6]
)
