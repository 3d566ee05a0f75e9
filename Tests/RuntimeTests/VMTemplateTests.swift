@testable import Runtime
import Foundation
import Testing

/// The template's configuration and bookkeeping, without a VM: what it is built from,
/// when it counts as stale, and which sandboxes may use it.
@Suite struct VMTemplateTests {
    @Test func factoryKeysAreKatas() throws {
        let loaded = try ConfigurationLoader.parse("""
            [factory]
            enable_template = true
            template_path = "/run/kasa-test/template"
            """, path: "t.toml")
        #expect(loaded.configuration.factory.enableTemplate)
        #expect(loaded.configuration.factory.templatePath == "/run/kasa-test/template")
        #expect(loaded.warnings.isEmpty, "\(loaded.warnings)")
        #expect(RuntimeConfiguration.defaults.factory.templatePath == "/run/vc/vm/template", "Kata's default place")
        #expect(throws: RuntimeError.self, "a relative template path is refused") {
            try ConfigurationLoader.parse("[factory]\ntemplate_path = \"template\"\n", path: "t.toml")
        }
        #expect(throws: RuntimeError.self) { try ConfigurationLoader.parse("[factory]\nenable_template = \"yes\"\n", path: "t.toml") }
    }

    func settings(_ edit: (inout RuntimeConfiguration) -> Void = { _ in }) -> MicroVMBackend.Settings {
        var configuration = RuntimeConfiguration.defaults
        configuration.factory.enableTemplate = true
        edit(&configuration)
        return MicroVMBackend.Settings(configuration: configuration, sandboxID: "sandbox")
    }

    @Test func onlySandboxesOfTheTemplatesShapeUseIt() {
        #expect(settings().templateObstacle == nil)
        var bigger = settings()
        bigger.memoryMiB *= 2
        #expect(bigger.templateObstacle?.contains("MiB") == true)
        #expect(settings { $0.factory.enableTemplate = false }.templateObstacle == "templates are off")
        // The template of a virtio-fs configuration has the device; its clones serve their own directory.
        #expect(settings { $0.hypervisor.sharedFileSystem = .virtioFS }.templateObstacle == nil)
    }

    /// A virtio-fs configuration's template (with the device) lives beside the other one:
    /// two runtime classes that differ only in shared_fs do not rebuild each other's.
    @Test func aVirtioFSConfigurationHasATemplateDirectoryOfItsOwn() {
        #expect(settings().templatePath == "/run/vc/vm/template")
        #expect(settings { $0.hypervisor.sharedFileSystem = .virtioFS }.templatePath == "/run/vc/vm/template-virtio-fs")
        #expect(VMTemplate.inputs(for: settings { $0.hypervisor.sharedFileSystem = .virtioFS }).contains("shared_dirs=1"))
        #expect(VMTemplate.inputs(for: settings()).contains("shared_dirs=0"))
    }

    @Test func runAndTheShimShareOneTemplate() {
        // The shim sets the agent's container timeout and a pod's drive slots; kata-runtime
        // run does not, and may print the console: neither changes the template.
        var shim = settings()
        shim.containerInitTimeout = 5
        shim.driveSlots = 8
        var run = settings()
        run.consoleToStandardError = true
        #expect(VMTemplate.inputs(for: shim) == VMTemplate.inputs(for: run))
        #expect(VMTemplate.inputs(for: settings { $0.hypervisor.kernelParams = "loglevel=7" }) != VMTemplate.inputs(for: run))
    }

    @Test func aTemplateOfOtherInputsIsStaleAndSaysWhy() throws {
        let directory = try RuntimeTestSupport.temporaryDirectory("kasa-template")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let template = VMTemplate(path: directory)
        #expect(template.status(for: settings()) == .absent)
        for name in ["state", "memory"] { FileManager.default.createFile(atPath: directory + "/" + name, contents: Data()) }
        let recorded = VMTemplate.inputs(for: settings())
        try (recorded.joined(separator: "\n") + "\n").write(toFile: directory + "/inputs", atomically: true, encoding: .utf8)
        #expect(template.status(for: settings()) == .ready(inputs: recorded))
        let changed = template.status(for: settings { $0.hypervisor.defaultMemoryMiB = 1024 })
        #expect(changed == .stale(inputs: recorded, changed: ["memory_mib"]), "\(changed)")
        // A template without a virtio-fs device does not serve a virtio-fs configuration.
        let shared = template.status(for: settings { $0.hypervisor.sharedFileSystem = .virtioFS })
        #expect(shared == .stale(inputs: recorded, changed: ["shared_dirs"]), "\(shared)")
        try template.destroy()
        #expect(!FileManager.default.fileExists(atPath: directory), "destroy left the directory")
    }

    /// The template VM (running as kasa-vmm's user) wrote its snapshot into a directory of
    /// its own: only plain files of one link are taken, made root's and 0600, and moved into
    /// the template; a symbolic link or a hard link it planted is refused, nothing moved.
    @Test func aSnapshotIsAdoptedOnlyAsPlainFilesMadeRoots() throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "kasa-adopt-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let template = VMTemplate(path: directory + "/template")
        try FileManager.default.createDirectory(atPath: template.snapshotDirectory, withIntermediateDirectories: true)
        let secret = directory + "/secret"
        try Data("host file".utf8).write(to: URL(filePath: secret))
        try FileManager.default.createSymbolicLink(atPath: template.snapshotDirectory + "/state", withDestinationPath: secret)
        #expect(throws: RuntimeError.self, "a symbolic link was followed") { try template.adopt("state") }
        #expect(link(secret, template.snapshotDirectory + "/memory") == 0)
        #expect(throws: RuntimeError.self, "a second link to another file was taken") { try template.adopt("memory") }
        #expect(!FileManager.default.fileExists(atPath: template.path + "/state")
            && !FileManager.default.fileExists(atPath: template.path + "/memory"))

        try FileManager.default.removeItem(atPath: template.snapshotDirectory + "/state")
        try Data("saved".utf8).write(to: URL(filePath: template.snapshotDirectory + "/state"))
        #expect(chown(template.snapshotDirectory + "/state", 65534, 65534) == 0)
        #expect(chmod(template.snapshotDirectory + "/state", 0o666) == 0)
        try template.adopt("state")
        let adopted = try FileManager.default.attributesOfItem(atPath: template.path + "/state")
        #expect(adopted[.ownerAccountID] as? Int == 0 && adopted[.groupOwnerAccountID] as? Int == 0)
        #expect(adopted[.posixPermissions] as? Int == 0o600)
        #expect(!FileManager.default.fileExists(atPath: template.snapshotDirectory + "/state"))
    }
}
