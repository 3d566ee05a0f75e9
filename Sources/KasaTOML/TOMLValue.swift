/// A value in the TOML subset Kasa reads (configuration.toml): what Kata's configuration
/// files use. Dates and inline tables are refused with a clear error, never misread.
public enum TOMLValue: Sendable, Equatable, CustomStringConvertible {
    case string(String)
    case integer(Int64)
    case float(Double)
    case boolean(Bool)
    case array([TOMLValue])

    public var kindDescription: String {
        switch self {
        case .string: "a string"
        case .integer: "an integer"
        case .float: "a number"
        case .boolean: "a boolean"
        case .array: "an array"
        }
    }

    /// TOML text for the value (what `kata-runtime env` prints).
    public var description: String {
        switch self {
        case .string(let text): TOMLValue.quoted(text)
        case .integer(let number): String(number)
        case .float(let number): String(number)
        case .boolean(let flag): flag ? "true" : "false"
        case .array(let items): "[" + items.map(\.description).joined(separator: ", ") + "]"
        }
    }

    /// A TOML basic string: quotes, backslashes and control characters escaped.
    public static func quoted(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\t": result += "\\t"
            case "\r": result += "\\r"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7f {
                    let hex = String(scalar.value, radix: 16, uppercase: true)
                    result += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    result.unicodeScalars.append(scalar)
                }
            }
        }
        return result + "\""
    }
}

/// One `key = value` line, with where it was written (for messages).
public struct TOMLEntry: Sendable, Equatable {
    public let key: String
    public let value: TOMLValue
    public let line: Int
}

/// A parsed document: tables in the order they appear, each with its entries in order.
/// The root table (keys before any header) has the path "".
public struct TOMLDocument: Sendable, Equatable {
    public struct Table: Sendable, Equatable {
        public let path: String
        public let line: Int
        public internal(set) var entries: [TOMLEntry]

        public subscript(key: String) -> TOMLValue? { entries.first { $0.key == key }?.value }
    }

    public internal(set) var tables: [Table]

    public subscript(path: String) -> Table? { tables.first { $0.path == path } }

    public init(parsing text: String) throws(TOMLParseError) {
        var parser = TOMLParser(text: text)
        self = try parser.parseDocument()
    }

    init(tables: [Table]) { self.tables = tables }
}

public struct TOMLParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public let line: Int
    public let reason: String

    public var description: String { "line \(line): \(reason)" }
}
