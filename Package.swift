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
        .executableTarget(
            name: "kasa-vmm",
            dependencies: ["VMM", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .testTarget(name: "GuestMemoryTests", dependencies: ["GuestMemory"]),
        .testTarget(name: "BootTests", dependencies: ["Boot", "GuestMemory"]),
        .testTarget(name: "LegacyDevicesTests", dependencies: ["LegacyDevices"]),
        .testTarget(name: "VirtioTests", dependencies: ["Virtio", "GuestMemory"]),
        // Boots tiny guests (assembled from Tests/guests with gcc) and the real kernel under KVM.
        .testTarget(name: "VMMIntegrationTests", dependencies: ["VMM", "KVM", "Boot", "GuestMemory"]),
    ],
    swiftLanguageModes: [.v6]
)
