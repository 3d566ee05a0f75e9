// swift-tools-version:6.0
import PackageDescription

// One target per concern; lower targets know nothing of the ones above them
// (docs/architecture.md has the map).
let package = Package(
    name: "Kasa",
    products: [
        .executable(name: "kasa-vmm", targets: ["kasa-vmm"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // The guest agent's package: the tests speak its protocol (AgentProtocol) to the
        // agent running in a VM. No product of the VMM links it.
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
            dependencies: ["VMM", "Boot", "KVM", "KasaJSON"],
            // The Swift runtime linked in (-static-stdlib), by lld with packed relative
            // relocations (needs glibc 2.36+ at run time): fewer resident pages than the
            // dynamic runtime (docs/performance.md, "VMM start to first guest byte").
            linkerSettings: [.unsafeFlags([
                "-static-stdlib", "-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs",
            ], .when(platforms: [.linux]))]
        ),
        .testTarget(name: "KasaJSONTests", dependencies: ["KasaJSON"]),
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
