@testable import Confinement
import Testing

/// Which binds a jail makes for the paths a VMM keeps.
@Suite struct MountJailPlanTests {
    @Test func parentsComeFirstAndCoverTheirChildren() {
        let plan = MountJail.plan([
            JailPath("/state/sandbox/console.log", writable: true),
            JailPath("/state/sandbox", writable: true),
            JailPath("/images/kernel", writable: false),
            JailPath("/state/sandbox/vsock.sock", writable: true),
        ])
        #expect(plan == [JailPath("/images/kernel", writable: false), JailPath("/state/sandbox", writable: true)])
    }

    @Test func aReadOnlyPathInsideAWritableOneKeepsItsOwnBind() {
        let plan = MountJail.plan([JailPath("/state", writable: true), JailPath("/state/template", writable: false)])
        #expect(plan == [JailPath("/state", writable: true), JailPath("/state/template", writable: false)])
    }

    @Test func aPathAskedTwiceIsWritableIfEitherAsks() {
        let plan = MountJail.plan([JailPath("/data/", writable: false), JailPath("/data", writable: true),
                                   JailPath("/data/./x", writable: true)])
        #expect(plan == [JailPath("/data", writable: true)])
    }

    @Test func relativePathsBelongToTheWorkingDirectory() {
        #expect(MountJail.absolute("vmlinux", in: "/home/u") == "/home/u/vmlinux")
        #expect(MountJail.absolute("/boot/vmlinux", in: "/home/u") == "/boot/vmlinux")
        #expect(MountJail.normalized(MountJail.absolute("../images/./disk", in: "/home/u")) == "/home/images/disk")
        #expect(MountJail.plan([JailPath("/home/u/.", writable: true), JailPath("/home/u/../u/x", writable: true)])
            == [JailPath("/home/u", writable: true)])
    }

    @Test func siblingsWithACommonPrefixAreNotNested() {
        let plan = MountJail.plan([JailPath("/state/a", writable: true), JailPath("/state/ab", writable: true)])
        #expect(plan.count == 2)
    }
}
