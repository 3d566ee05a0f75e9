/// Zero-padded text for messages (hex bytes of an instruction the VMM could not emulate).
extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
