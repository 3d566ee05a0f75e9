/// Reads the TOML subset: comments, [table] and [dotted.table] headers (bare or quoted
/// parts), bare/quoted/dotted keys, basic and literal strings (one line), integers
/// (decimal with `_`, 0x/0o/0b), floats, booleans, and arrays (which may span lines and
/// end with a comma). Anything else is an error naming the line, so a configuration is
/// never half-understood.
struct TOMLParser {
    private let bytes: [UInt8]
    private var position = 0
    private var line = 1

    init(text: String) { bytes = Array(text.utf8) }

    mutating func parseDocument() throws(TOMLParseError) -> TOMLDocument {
        var tables = [TOMLDocument.Table(path: "", line: 1, entries: [])]
        var current = 0
        var definedKeys: Set<String> = []  // "table\u{0}key", for duplicates
        var headers: Set<String> = []
        while true {
            skipBlank(includingNewlines: true)
            guard let byte = peek() else { break }
            if byte == UInt8(ascii: "[") {
                let headerLine = line
                position += 1
                if peek() == UInt8(ascii: "[") { throw failure("arrays of tables ([[...]]) are not supported") }
                skipBlank(includingNewlines: false)
                let path = try parseKeyPath(until: UInt8(ascii: "]")).joined(separator: ".")
                guard peek() == UInt8(ascii: "]") else { throw failure("expected ']' to close the table header") }
                position += 1
                try expectLineEnd()
                guard headers.insert(path).inserted else {
                    throw TOMLParseError(line: headerLine, reason: "table [\(path)] is defined twice")
                }
                if let existing = tables.firstIndex(where: { $0.path == path }) {
                    current = existing  // created implicitly by a dotted key earlier
                } else {
                    tables.append(TOMLDocument.Table(path: path, line: headerLine, entries: []))
                    current = tables.count - 1
                }
                continue
            }
            let keyLine = line
            let keyParts = try parseKeyPath(until: UInt8(ascii: "="))
            guard peek() == UInt8(ascii: "=") else { throw failure("expected '=' after the key \(keyParts.joined(separator: "."))") }
            position += 1
            skipBlank(includingNewlines: false)
            let value = try parseValue()
            try expectLineEnd()
            // A dotted key `a.b = 1` inside [t] belongs to table t.a, key b.
            var tablePath = tables[current].path
            for part in keyParts.dropLast() { tablePath += tablePath.isEmpty ? part : "." + part }
            let key = keyParts.last!
            guard definedKeys.insert(tablePath + "\u{0}" + key).inserted else {
                throw TOMLParseError(line: keyLine, reason: "key \(key) is defined twice in [\(tablePath)]")
            }
            if let index = tables.firstIndex(where: { $0.path == tablePath }) {
                tables[index].entries.append(TOMLEntry(key: key, value: value, line: keyLine))
            } else {
                tables.append(TOMLDocument.Table(path: tablePath, line: keyLine,
                                                 entries: [TOMLEntry(key: key, value: value, line: keyLine)]))
            }
        }
        if tables[0].entries.isEmpty { tables.removeFirst() }
        return TOMLDocument(tables: tables)
    }

    // MARK: Keys

    private mutating func parseKeyPath(until terminator: UInt8) throws(TOMLParseError) -> [String] {
        var parts: [String] = []
        while true {
            skipBlank(includingNewlines: false)
            guard let byte = peek() else { throw failure("unexpected end of file in a key") }
            if byte == UInt8(ascii: "\"") {
                parts.append(try parseBasicString())
            } else if byte == UInt8(ascii: "'") {
                parts.append(try parseLiteralString())
            } else {
                let start = position
                while let next = peek(), Self.isBareKeyByte(next) { position += 1 }
                guard position > start else {
                    throw failure("expected a key, found \(describe(byte))")
                }
                parts.append(String(decoding: bytes[start..<position], as: UTF8.self))
            }
            skipBlank(includingNewlines: false)
            if peek() == UInt8(ascii: ".") { position += 1; continue }
            if peek() == terminator { return parts }
            throw failure("expected '\(Character(Unicode.Scalar(terminator)))' after the key \(parts.joined(separator: "."))")
        }
    }

    private static func isBareKeyByte(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
            || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
    }

    // MARK: Values

    private mutating func parseValue() throws(TOMLParseError) -> TOMLValue {
        guard let byte = peek() else { throw failure("expected a value, found the end of the file") }
        switch byte {
        case UInt8(ascii: "\""):
            if startsWith("\"\"\"") { throw failure("multi-line strings are not supported") }
            return .string(try parseBasicString())
        case UInt8(ascii: "'"):
            if startsWith("'''") { throw failure("multi-line strings are not supported") }
            return .string(try parseLiteralString())
        case UInt8(ascii: "["):
            return try parseArray()
        case UInt8(ascii: "{"):
            throw failure("inline tables are not supported; use a [table] header")
        case UInt8(ascii: "t"), UInt8(ascii: "f"):
            if startsWith("true") && !isWordByte(at: position + 4) { position += 4; return .boolean(true) }
            if startsWith("false") && !isWordByte(at: position + 5) { position += 5; return .boolean(false) }
            throw failure("expected a value, found \(word())")
        default:
            return try parseNumber()
        }
    }

    private mutating func parseArray() throws(TOMLParseError) -> TOMLValue {
        position += 1
        var items: [TOMLValue] = []
        while true {
            skipBlank(includingNewlines: true)
            guard let byte = peek() else { throw failure("unexpected end of file in an array") }
            if byte == UInt8(ascii: "]") { position += 1; return .array(items) }
            items.append(try parseValue())
            skipBlank(includingNewlines: true)
            if peek() == UInt8(ascii: ",") { position += 1; continue }
            if peek() == UInt8(ascii: "]") { position += 1; return .array(items) }
            throw failure("expected ',' or ']' in an array, found \(peek().map(describe) ?? "the end of the file")")
        }
    }

    private mutating func parseNumber() throws(TOMLParseError) -> TOMLValue {
        let text = word()
        guard !text.isEmpty else { throw failure("expected a value, found \(peek().map(describe) ?? "the end of the file")") }
        position += text.utf8.count
        if text.contains("-") && text.contains(":") || text.filter({ $0 == "-" }).count > 1 {
            throw failure("dates and times are not supported (\(text))")
        }
        var body = Substring(text)
        var negative = false
        if body.first == "+" || body.first == "-" { negative = body.first == "-"; body = body.dropFirst() }
        guard !body.hasPrefix("_"), !body.hasSuffix("_"), !body.contains("__") else {
            throw failure("malformed number \(text)")
        }
        let digits = String(body.filter { $0 != "_" })
        for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] where digits.hasPrefix(prefix) {
            guard !negative && text.first != "+", let value = Int64(digits.dropFirst(2), radix: radix) else {
                throw failure("malformed number \(text)")
            }
            return .integer(value)
        }
        if digits.allSatisfy(\.isNumber) {
            guard digits.count == 1 || !digits.hasPrefix("0") else { throw failure("leading zeros are not allowed (\(text))") }
            guard let value = Int64((negative ? "-" : "") + digits) else { throw failure("integer out of range (\(text))") }
            return .integer(value)
        }
        if ["inf", "nan"].contains(digits) { return .float(digits == "inf" ? (negative ? -.infinity : .infinity) : .nan) }
        guard digits.first?.isNumber == true, digits.last?.isNumber == true, let value = Double(digits) else {
            throw failure("expected a value, found \(text)")
        }
        return .float(negative ? -value : value)
    }

    private mutating func parseBasicString() throws(TOMLParseError) -> String {
        position += 1
        var scalars = String.UnicodeScalarView()
        var raw: [UInt8] = []
        func flush() { scalars.append(contentsOf: String(decoding: raw, as: UTF8.self).unicodeScalars); raw.removeAll() }
        while let byte = peek() {
            position += 1
            switch byte {
            case UInt8(ascii: "\""):
                flush()
                return String(scalars)
            case UInt8(ascii: "\n"):
                throw failure("unterminated string")
            case UInt8(ascii: "\\"):
                flush()
                guard let escape = peek() else { break }
                position += 1
                switch escape {
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "b"): scalars.append("\u{8}")
                case UInt8(ascii: "f"): scalars.append("\u{c}")
                case UInt8(ascii: "\""): scalars.append("\"")
                case UInt8(ascii: "\\"): scalars.append("\\")
                case UInt8(ascii: "u"), UInt8(ascii: "U"):
                    let count = escape == UInt8(ascii: "u") ? 4 : 8
                    guard position + count <= bytes.count,
                          let code = UInt32(String(decoding: bytes[position..<position + count], as: UTF8.self), radix: 16),
                          let scalar = Unicode.Scalar(code) else {
                        throw failure("malformed \\u escape in a string")
                    }
                    position += count
                    scalars.append(scalar)
                default:
                    throw failure("unknown escape \\\(Character(Unicode.Scalar(escape))) in a string")
                }
            default:
                raw.append(byte)
            }
        }
        throw failure("unterminated string")
    }

    private mutating func parseLiteralString() throws(TOMLParseError) -> String {
        position += 1
        let start = position
        while let byte = peek() {
            if byte == UInt8(ascii: "'") {
                position += 1
                return String(decoding: bytes[start..<position - 1], as: UTF8.self)
            }
            if byte == UInt8(ascii: "\n") { break }
            position += 1
        }
        throw failure("unterminated string")
    }

    // MARK: Scanning

    private func peek() -> UInt8? { position < bytes.count ? bytes[position] : nil }

    private func startsWith(_ text: String) -> Bool {
        let expected = Array(text.utf8)
        return position + expected.count <= bytes.count && Array(bytes[position..<position + expected.count]) == expected
    }

    private func isWordByte(at index: Int) -> Bool {
        index < bytes.count && (Self.isBareKeyByte(bytes[index]) || bytes[index] == UInt8(ascii: "."))
    }

    /// The run of number-ish characters at the cursor (not consumed).
    private func word() -> String {
        var end = position
        while end < bytes.count, Self.isBareKeyByte(bytes[end]) || [UInt8(ascii: "."), UInt8(ascii: "+"), UInt8(ascii: ":")].contains(bytes[end]) {
            end += 1
        }
        return String(decoding: bytes[position..<end], as: UTF8.self)
    }

    private mutating func skipBlank(includingNewlines: Bool) {
        while let byte = peek() {
            if byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r") {
                position += 1
            } else if byte == UInt8(ascii: "#") {
                while let next = peek(), next != UInt8(ascii: "\n") { position += 1 }
            } else if byte == UInt8(ascii: "\n") && includingNewlines {
                position += 1
                line += 1
            } else {
                return
            }
        }
    }

    private mutating func expectLineEnd() throws(TOMLParseError) {
        skipBlank(includingNewlines: false)
        guard let byte = peek() else { return }
        guard byte == UInt8(ascii: "\n") else { throw failure("expected the end of the line, found \(describe(byte))") }
        position += 1
        line += 1
    }

    private func describe(_ byte: UInt8) -> String {
        byte >= 0x20 && byte < 0x7f ? "'\(Character(Unicode.Scalar(byte)))'" : "byte 0x\(String(byte, radix: 16))"
    }

    private func failure(_ reason: String) -> TOMLParseError { TOMLParseError(line: line, reason: reason) }
}
