/// One case per way a boot can fail, each with a message a user can act on.
public enum BootError: Error, Equatable, Sendable, CustomStringConvertible {
    case unrecognizedKernelFormat
    case truncated(what: String)
    case invalidELF(String)
    case invalidBzImage(String)
    case kernelDoesNotFit(loadAddress: UInt64, end: UInt64, memoryEnd: UInt64)
    case segmentBelowHighMemory(address: UInt64)
    case commandLineTooLong(length: Int, limit: Int)
    case commandLineHasNUL
    case initrdDoesNotFit(size: UInt64)
    case tooManyVCPUs(requested: Int, limit: Int)
    case memoryTooSmall(UInt64)
    case memoryMapTooLarge(entries: Int)

    public var description: String {
        switch self {
        case .unrecognizedKernelFormat:
            return "the kernel is neither an x86-64 ELF vmlinux nor a bzImage"
        case .truncated(let what):
            return "the kernel file is truncated: \(what) runs past its end"
        case .invalidELF(let reason):
            return "invalid ELF kernel: \(reason)"
        case .invalidBzImage(let reason):
            return "invalid bzImage: \(reason)"
        case .kernelDoesNotFit(let load, let end, let memoryEnd):
            return "the kernel needs guest memory 0x\(String(load, radix: 16))-0x\(String(end, radix: 16)) but RAM ends at 0x\(String(memoryEnd, radix: 16)); give the VM more memory"
        case .segmentBelowHighMemory(let address):
            return "the kernel wants to load at 0x\(String(address, radix: 16)), below 1 MiB where the boot structures live"
        case .commandLineTooLong(let length, let limit):
            return "the kernel command line is \(length) bytes; this kernel accepts at most \(limit)"
        case .commandLineHasNUL:
            return "the kernel command line contains a NUL byte"
        case .initrdDoesNotFit(let size):
            return "the initrd (\(size >> 10) KiB) does not fit in guest RAM above the kernel; give the VM more memory"
        case .tooManyVCPUs(let requested, let limit):
            return "\(requested) vCPUs requested; at most \(limit) are possible"
        case .memoryTooSmall(let size):
            return "\(size >> 20) MiB of guest memory is too small"
        case .memoryMapTooLarge(let entries):
            return "the memory map has \(entries) entries, more than the boot structures hold"
        }
    }
}
