/// A port range that reads as zero and ignores writes: the CMOS/RTC index and data ports
/// (Linux takes the time from kvmclock, and an all-ones "update in progress" would stall it)
/// and the POST diagnostic port 0x80 that some code uses for short delays.
public final class QuietPort: PortIODevice, Sendable {
    public init() {}
    public func read(offset: UInt16, size: Int) -> UInt32 { 0 }
    public func write(offset: UInt16, size: Int, value: UInt32) {}
}
