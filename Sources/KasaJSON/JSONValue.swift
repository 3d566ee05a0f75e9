/// A small, strict JSON (RFC 8259) reader with no dependency beyond the standard library.
///
/// kasa-vmm reads one small configuration file per start; linking Foundation's JSONDecoder
/// for that cost ~2 MiB of resident memory on every start (docs/performance.md). This reader
/// builds a `JSONValue` tree and reports the first error with its line and column.
///
/// Accepted: objects, arrays, strings (all escapes, including `\uXXXX` and surrogate pairs;
/// the text must be valid UTF-8), numbers (kept as their literal text, see `JSONNumber`),
/// `true`, `false`, `null`, and an optional UTF-8 byte order mark at the very start.
/// Rejected, with a message: anything else, including trailing commas, comments, duplicate
/// keys in one object, unescaped control characters in strings, unpaired surrogates, leading
/// zeros, `NaN`/`Infinity`, nesting deeper than `maximumDepth`, and anything after the value.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(JSONNumber)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    /// Containers (objects and arrays) nested deeper than this are refused by default.
    public static let defaultMaximumDepth = 64

    /// Parses one JSON document from UTF-8 bytes.
    public init(parsing bytes: [UInt8], maximumDepth: Int = JSONValue.defaultMaximumDepth) throws(JSONParseError) {
        var parser = JSONParser(bytes: bytes, maximumDepth: maximumDepth)
        self = try parser.parseDocument()
    }

    /// Parses one JSON document from a string.
    public init(parsing text: String, maximumDepth: Int = JSONValue.defaultMaximumDepth) throws(JSONParseError) {
        try self.init(parsing: Array(text.utf8), maximumDepth: maximumDepth)
    }

    /// "null", "a boolean", "a number", "a string", "an array" or "an object", for messages.
    public var kindDescription: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    public var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    public var numberValue: JSONNumber? {
        if case .number(let value) = self { return value }
        return nil
    }

    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let value) = self { return value }
        return nil
    }

    public var objectValue: JSONObject? {
        if case .object(let value) = self { return value }
        return nil
    }

    /// The member `key` of an object; nil when this is not an object or has no such key.
    public subscript(key: String) -> JSONValue? {
        objectValue?[key]
    }

    /// The element at `index` of an array; nil when this is not an array or it is too short.
    public subscript(index: Int) -> JSONValue? {
        guard case .array(let elements) = self, elements.indices.contains(index) else { return nil }
        return elements[index]
    }
}

/// A JSON object: its members in document order, looked up by key. Keys are unique (the
/// parser refuses duplicates). Two objects are equal when they have the same members in
/// the same order.
public struct JSONObject: Sendable, Equatable {
    /// The keys in the order they appear in the document.
    public private(set) var keys: [String] = []
    private var values: [String: JSONValue] = [:]

    public init() {}

    /// Builds an object from members in order; a repeated key keeps its last value.
    public init(_ members: [(key: String, value: JSONValue)]) {
        for member in members { self[member.key] = member.value }
    }

    public var count: Int { keys.count }
    public var isEmpty: Bool { keys.isEmpty }

    /// The members in document order.
    public var members: [(key: String, value: JSONValue)] {
        keys.map { ($0, values[$0]!) }
    }

    /// Setting nil removes the member; setting a new key appends it.
    public subscript(key: String) -> JSONValue? {
        get { values[key] }
        set {
            if let newValue {
                if values.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if values.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    /// Adds a member unless the key is already there; false when it was.
    mutating func insertNew(_ key: String, _ value: JSONValue) -> Bool {
        guard values[key] == nil else { return false }
        values[key] = value
        keys.append(key)
        return true
    }
}

/// A JSON number, kept as its literal text (which the parser has checked against the JSON
/// grammar) so that integers of any size convert exactly. Equality compares the literals:
/// `1` and `1.0` are different `JSONNumber`s although both convert to the integer 1.
public struct JSONNumber: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// The number exactly as written, e.g. `-12`, `0.5`, `1e3`.
    public let literal: String

    /// `literal` must match the JSON number grammar; nil otherwise.
    public init?(literal: String) {
        guard JSONNumber.split(literal) != nil else { return nil }
        self.literal = literal
    }

    init(checkedLiteral: String) {
        literal = checkedLiteral
    }

    public init<T: BinaryInteger>(_ value: T) {
        literal = String(value)
    }

    public var description: String { literal }

    /// The nearest Double (correctly rounded); nil when the magnitude is too large for a
    /// Double. Values too small for a Double become zero.
    public var doubleValue: Double? {
        guard let value = Double(literal), value.isFinite else { return nil }
        return value
    }

    /// Whether the number has an integral value, however written (`3`, `3.0`, `0.3e1`).
    public var isIntegral: Bool {
        guard let parts = JSONNumber.split(literal) else { return false }
        return parts.isZero || parts.exponent >= 0
    }

    /// The number as `T` when its value is an integer that `T` can hold exactly (`2`, `2.0`
    /// and `20e-1` all give 2); nil when it has a fractional part or is out of `T`'s range.
    public func integer<T: FixedWidthInteger>(as type: T.Type = T.self) -> T? {
        guard let parts = JSONNumber.split(literal) else { return nil }
        if parts.isZero { return 0 }
        guard parts.exponent >= 0, parts.exponent <= T.bitWidth else { return nil }
        var result: T = 0
        let digits = parts.digits + [UInt8](repeating: 0, count: parts.exponent)
        for digit in digits {
            let (shifted, overflow1) = result.multipliedReportingOverflow(by: 10)
            guard !overflow1 else { return nil }
            // Accumulate negative numbers downwards so that T.min is reachable.
            let (next, overflow2) = parts.negative
                ? shifted.subtractingReportingOverflow(T(digit))
                : shifted.addingReportingOverflow(T(digit))
            guard !overflow2 else { return nil }
            result = next
        }
        return result
    }

    /// The value as sign × digits × 10^exponent, with no leading or trailing zero digits.
    struct Parts {
        var negative: Bool
        var digits: [UInt8]     // 0...9 each; empty means zero
        var exponent: Int
        var isZero: Bool { digits.isEmpty }
    }

    static func split(_ literal: String) -> Parts? {
        let bytes = Array(literal.utf8)
        var index = 0
        func digit(_ i: Int) -> Bool { i < bytes.count && bytes[i] >= 0x30 && bytes[i] <= 0x39 }
        var negative = false
        if index < bytes.count, bytes[index] == UInt8(ascii: "-") { negative = true; index += 1 }
        guard digit(index) else { return nil }
        var digits: [UInt8] = []
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
            if digit(index) { return nil }
        } else {
            while digit(index) { digits.append(bytes[index] - 0x30); index += 1 }
        }
        var exponent = 0
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            guard digit(index) else { return nil }
            while digit(index) { digits.append(bytes[index] - 0x30); exponent -= 1; index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            var exponentNegative = false
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
                exponentNegative = bytes[index] == UInt8(ascii: "-")
                index += 1
            }
            guard digit(index) else { return nil }
            // Saturate: any exponent this large already over- or underflows every integer type.
            var written = 0
            while digit(index) {
                written = min(written * 10 + Int(bytes[index] - 0x30), 1 << 40)
                index += 1
            }
            exponent += exponentNegative ? -written : written
        }
        guard index == bytes.count else { return nil }
        if let first = digits.firstIndex(where: { $0 != 0 }) {
            digits.removeFirst(first)
        } else {
            return Parts(negative: negative, digits: [], exponent: 0)
        }
        while digits.last == 0 { digits.removeLast(); exponent += 1 }
        return Parts(negative: negative, digits: digits, exponent: exponent)
    }
}

/// Where and why parsing stopped. `line` and `column` count from 1; the column counts
/// characters (Unicode scalars), not bytes; `offset` is the byte offset from the start.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public let line: Int
    public let column: Int
    public let offset: Int

    public var description: String { "line \(line), column \(column): \(message)" }
}

// MARK: - Writing

extension JSONValue: CustomStringConvertible {
    /// Compact JSON text for the value; parsing it gives back an equal value.
    public var description: String {
        var out = ""
        write(to: &out)
        return out
    }

    private func write(to out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let value): out += value ? "true" : "false"
        case .number(let value): out += value.literal
        case .string(let value): JSONValue.writeString(value, to: &out)
        case .array(let elements):
            out += "["
            for (i, element) in elements.enumerated() {
                if i > 0 { out += "," }
                element.write(to: &out)
            }
            out += "]"
        case .object(let object):
            out += "{"
            for (i, member) in object.members.enumerated() {
                if i > 0 { out += "," }
                JSONValue.writeString(member.key, to: &out)
                out += ":"
                member.value.write(to: &out)
            }
            out += "}"
        }
    }

    private static func writeString(_ text: String, to out: inout String) {
        out += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16, uppercase: true)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}

// MARK: - Parsing

struct JSONParser {
    let bytes: [UInt8]
    let maximumDepth: Int
    var index = 0

    init(bytes: [UInt8], maximumDepth: Int) {
        self.bytes = bytes
        self.maximumDepth = maximumDepth
    }

    mutating func parseDocument() throws(JSONParseError) -> JSONValue {
        if bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF { index = 3 }
        skipWhitespace()
        guard index < bytes.count else { throw error("empty input: expected a JSON value") }
        let value = try parseValue(depth: 0)
        skipWhitespace()
        if index < bytes.count {
            throw error("unexpected \(found()) after the JSON value")
        }
        return value
    }

    // MARK: values

    mutating func parseValue(depth: Int) throws(JSONParseError) -> JSONValue {
        guard index < bytes.count else { throw error("expected a JSON value, found the end of the input") }
        switch bytes[index] {
        case UInt8(ascii: "{"):
            guard depth < maximumDepth else { throw error("nesting deeper than \(maximumDepth) levels") }
            return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["):
            guard depth < maximumDepth else { throw error("nesting deeper than \(maximumDepth) levels") }
            return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""):
            return .string(try parseString())
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return .number(try parseNumber())
        case UInt8(ascii: "t"):
            try parseLiteral("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try parseLiteral("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try parseLiteral("null")
            return .null
        default:
            throw error("expected a JSON value, found \(found())")
        }
    }

    mutating func parseObject(depth: Int) throws(JSONParseError) -> JSONValue {
        index += 1  // {
        var object = JSONObject()
        skipWhitespace()
        if peek(UInt8(ascii: "}")) {
            index += 1
            return .object(object)
        }
        while true {
            guard peek(UInt8(ascii: "\"")) else {
                if peek(UInt8(ascii: "}")) { throw error("a comma before '}' is not allowed (trailing comma)") }
                throw error("expected a string key, found \(found())")
            }
            let keyOffset = index
            let key = try parseString()
            skipWhitespace()
            guard peek(UInt8(ascii: ":")) else {
                throw error("expected ':' after the key '\(key)', found \(found())")
            }
            index += 1
            skipWhitespace()
            let value = try parseValue(depth: depth)
            guard object.insertNew(key, value) else {
                throw error("duplicate key '\(key)' in one object", at: keyOffset)
            }
            skipWhitespace()
            if peek(UInt8(ascii: ",")) {
                index += 1
                skipWhitespace()
            } else if peek(UInt8(ascii: "}")) {
                index += 1
                return .object(object)
            } else {
                throw error("expected ',' or '}' after the value of '\(key)', found \(found())")
            }
        }
    }

    mutating func parseArray(depth: Int) throws(JSONParseError) -> JSONValue {
        index += 1  // [
        var elements: [JSONValue] = []
        skipWhitespace()
        if peek(UInt8(ascii: "]")) {
            index += 1
            return .array(elements)
        }
        while true {
            if peek(UInt8(ascii: "]")) { throw error("a comma before ']' is not allowed (trailing comma)") }
            elements.append(try parseValue(depth: depth))
            skipWhitespace()
            if peek(UInt8(ascii: ",")) {
                index += 1
                skipWhitespace()
            } else if peek(UInt8(ascii: "]")) {
                index += 1
                return .array(elements)
            } else {
                throw error("expected ',' or ']' after an array element, found \(found())")
            }
        }
    }

    mutating func parseLiteral(_ word: StaticString) throws(JSONParseError) {
        let start = index
        let expected = UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount)
        for byte in expected {
            guard index < bytes.count, bytes[index] == byte else {
                throw error("invalid literal: expected true, false or null", at: start)
            }
            index += 1
        }
        // "truex", "nullnull": a literal runs into more letters.
        if index < bytes.count, isLetterOrDigit(bytes[index]) {
            throw error("invalid literal: expected true, false or null", at: start)
        }
    }

    mutating func parseNumber() throws(JSONParseError) -> JSONNumber {
        let start = index
        if peek(UInt8(ascii: "-")) { index += 1 }
        guard isDigit(at: index) else { throw error("expected a digit after '-', found \(found())") }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
            if isDigit(at: index) { throw error("numbers must not have leading zeros", at: start) }
        } else {
            while isDigit(at: index) { index += 1 }
        }
        if peek(UInt8(ascii: ".")) {
            index += 1
            guard isDigit(at: index) else { throw error("expected a digit after the decimal point, found \(found())") }
            while isDigit(at: index) { index += 1 }
        }
        if peek(UInt8(ascii: "e")) || peek(UInt8(ascii: "E")) {
            index += 1
            if peek(UInt8(ascii: "+")) || peek(UInt8(ascii: "-")) { index += 1 }
            guard isDigit(at: index) else { throw error("expected a digit in the exponent, found \(found())") }
            while isDigit(at: index) { index += 1 }
        }
        if index < bytes.count, isLetterOrDigit(bytes[index]) || bytes[index] == UInt8(ascii: ".") {
            throw error("invalid number: unexpected \(found()) after '\(String(decoding: bytes[start..<index], as: UTF8.self))'")
        }
        return JSONNumber(checkedLiteral: String(decoding: bytes[start..<index], as: UTF8.self))
    }

    /// Parses a string starting at its opening quote.
    mutating func parseString() throws(JSONParseError) -> String {
        let start = index
        index += 1  // "
        var buffer: [UInt8] = []
        while true {
            guard index < bytes.count else {
                throw error("unterminated string (no closing '\"' before the end of the input)", at: start)
            }
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                // Every byte appended was checked to be valid UTF-8.
                return String(decoding: buffer, as: UTF8.self)
            case UInt8(ascii: "\\"):
                try parseEscape(into: &buffer)
            case 0..<0x20:
                throw error("control character U+\(hex4(UInt32(byte))) must be escaped in a string")
            case 0x20..<0x80:
                buffer.append(byte)
                index += 1
            default:
                guard let length = utf8SequenceLength(at: index) else {
                    throw error("invalid UTF-8 (byte 0x\(hex2(byte))) in a string")
                }
                buffer.append(contentsOf: bytes[index..<index + length])
                index += length
            }
        }
    }

    mutating func parseEscape(into buffer: inout [UInt8]) throws(JSONParseError) {
        let escapeStart = index
        index += 1  // backslash
        guard index < bytes.count else {
            throw error("unterminated string (the input ends in an escape)", at: escapeStart)
        }
        let kind = bytes[index]
        index += 1
        switch kind {
        case UInt8(ascii: "\""): buffer.append(UInt8(ascii: "\""))
        case UInt8(ascii: "\\"): buffer.append(UInt8(ascii: "\\"))
        case UInt8(ascii: "/"): buffer.append(UInt8(ascii: "/"))
        case UInt8(ascii: "b"): buffer.append(0x08)
        case UInt8(ascii: "f"): buffer.append(0x0C)
        case UInt8(ascii: "n"): buffer.append(0x0A)
        case UInt8(ascii: "r"): buffer.append(0x0D)
        case UInt8(ascii: "t"): buffer.append(0x09)
        case UInt8(ascii: "u"):
            let unit = try parseHex4(escapeStart: escapeStart)
            var scalar = unit
            switch unit {
            case 0xD800...0xDBFF:
                // A high surrogate must be followed at once by an escaped low surrogate.
                let lowStart = index
                guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                    throw error("unpaired surrogate \\u\(hex4(unit)) (a high surrogate must be followed by a \\uDC00-\\uDFFF escape)", at: escapeStart)
                }
                index += 2
                let low = try parseHex4(escapeStart: lowStart)
                guard (0xDC00...0xDFFF).contains(low) else {
                    throw error("unpaired surrogate \\u\(hex4(unit)) (followed by \\u\(hex4(low)), not a low surrogate \\uDC00-\\uDFFF)", at: escapeStart)
                }
                scalar = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
            case 0xDC00...0xDFFF:
                throw error("unpaired surrogate \\u\(hex4(unit)) (a low surrogate without a high surrogate before it)", at: escapeStart)
            default:
                break
            }
            appendUTF8(scalar, to: &buffer)
        default:
            throw error("invalid escape: \(describeByte(at: index - 1, quoted: true)) after a backslash in a string (use \\\", \\\\, \\/, \\b, \\f, \\n, \\r, \\t or \\uXXXX)", at: escapeStart)
        }
    }

    mutating func parseHex4(escapeStart: Int) throws(JSONParseError) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard index < bytes.count, let digit = hexValue(bytes[index]) else {
                throw error("invalid \\u escape: expected 4 hex digits after \\u", at: escapeStart)
            }
            value = value << 4 | digit
            index += 1
        }
        return value
    }

    // MARK: helpers

    mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    func peek(_ byte: UInt8) -> Bool {
        index < bytes.count && bytes[index] == byte
    }

    func isDigit(at i: Int) -> Bool {
        i < bytes.count && bytes[i] >= UInt8(ascii: "0") && bytes[i] <= UInt8(ascii: "9")
    }

    func isLetterOrDigit(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
            || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "_")
    }

    func hexValue(_ byte: UInt8) -> UInt32? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return UInt32(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return UInt32(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return UInt32(byte - UInt8(ascii: "A") + 10)
        default: return nil
        }
    }

    /// The length of the well-formed UTF-8 sequence at `i` (Unicode table 3-7), or nil.
    func utf8SequenceLength(at i: Int) -> Int? {
        let lead = bytes[i]
        func continuation(_ k: Int, _ range: ClosedRange<UInt8> = 0x80...0xBF) -> Bool {
            i + k < bytes.count && range.contains(bytes[i + k])
        }
        switch lead {
        case 0x00...0x7F: return 1
        case 0xC2...0xDF: return continuation(1) ? 2 : nil
        case 0xE0: return continuation(1, 0xA0...0xBF) && continuation(2) ? 3 : nil
        case 0xE1...0xEC, 0xEE...0xEF: return continuation(1) && continuation(2) ? 3 : nil
        case 0xED: return continuation(1, 0x80...0x9F) && continuation(2) ? 3 : nil  // no surrogates
        case 0xF0: return continuation(1, 0x90...0xBF) && continuation(2) && continuation(3) ? 4 : nil
        case 0xF1...0xF3: return continuation(1) && continuation(2) && continuation(3) ? 4 : nil
        case 0xF4: return continuation(1, 0x80...0x8F) && continuation(2) && continuation(3) ? 4 : nil
        default: return nil
        }
    }

    func appendUTF8(_ scalar: UInt32, to buffer: inout [UInt8]) {
        switch scalar {
        case 0..<0x80:
            buffer.append(UInt8(scalar))
        case 0x80..<0x800:
            buffer.append(UInt8(0xC0 | scalar >> 6))
            buffer.append(UInt8(0x80 | scalar & 0x3F))
        case 0x800..<0x10000:
            buffer.append(UInt8(0xE0 | scalar >> 12))
            buffer.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            buffer.append(UInt8(0x80 | scalar & 0x3F))
        default:
            buffer.append(UInt8(0xF0 | scalar >> 18))
            buffer.append(UInt8(0x80 | scalar >> 12 & 0x3F))
            buffer.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            buffer.append(UInt8(0x80 | scalar & 0x3F))
        }
    }

    /// What is at the current position, for messages: "'x'", "'é'", "byte 0xFF", "the end of the input".
    func found() -> String {
        guard index < bytes.count else { return "the end of the input" }
        return describeByte(at: index, quoted: true)
    }

    func describeByte(at i: Int, quoted: Bool) -> String {
        let byte = bytes[i]
        if byte >= 0x21 && byte < 0x7F {
            let character = String(UnicodeScalar(byte))
            return quoted ? "'\(character)'" : character
        }
        if byte >= 0x80, let length = utf8SequenceLength(at: i) {
            let character = String(decoding: bytes[i..<i + length], as: UTF8.self)
            return quoted ? "'\(character)'" : character
        }
        if byte == 0x20 { return quoted ? "' '" : " " }
        return "byte 0x\(hex2(byte))"
    }

    func error(_ message: String) -> JSONParseError {
        error(message, at: index)
    }

    func error(_ message: String, at offset: Int) -> JSONParseError {
        let offset = min(max(offset, 0), bytes.count)
        var line = 1
        var lineStart = 0
        for i in 0..<offset where bytes[i] == 0x0A {
            line += 1
            lineStart = i + 1
        }
        // Count characters, not bytes: skip UTF-8 continuation bytes.
        var column = 1
        for i in lineStart..<offset where bytes[i] & 0xC0 != 0x80 { column += 1 }
        return JSONParseError(message: message, line: line, column: column, offset: offset)
    }

    func hex2(_ byte: UInt8) -> String {
        let text = String(byte, radix: 16, uppercase: true)
        return byte < 0x10 ? "0" + text : text
    }

    func hex4(_ value: UInt32) -> String {
        let text = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - text.count)) + text
    }
}
