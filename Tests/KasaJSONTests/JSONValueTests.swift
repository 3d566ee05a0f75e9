import KasaJSON
import Testing

/// The error for `text`, or nil when it parses.
private func parseError(_ text: String, maximumDepth: Int = JSONValue.defaultMaximumDepth) -> JSONParseError? {
    parseError(Array(text.utf8), maximumDepth: maximumDepth)
}

private func parseError(_ bytes: [UInt8], maximumDepth: Int = JSONValue.defaultMaximumDepth) -> JSONParseError? {
    do {
        _ = try JSONValue(parsing: bytes, maximumDepth: maximumDepth)
        return nil
    } catch {
        return error
    }
}

@Suite struct WellFormedInput {
    @Test func scalars() throws {
        #expect(try JSONValue(parsing: "null") == .null)
        #expect(try JSONValue(parsing: "true") == .bool(true))
        #expect(try JSONValue(parsing: "false") == .bool(false))
        #expect(try JSONValue(parsing: "\"hi\"") == .string("hi"))
        #expect(try JSONValue(parsing: "0").numberValue?.integer(as: Int.self) == 0)
        #expect(try JSONValue(parsing: " \t\r\n 42 \n").numberValue?.literal == "42")
    }

    @Test func objectKeepsDocumentOrder() throws {
        let value = try JSONValue(parsing: #"{"b": 1, "a": [true, null, "x"], "c": {}}"#)
        let object = try #require(value.objectValue)
        #expect(object.keys == ["b", "a", "c"])
        #expect(object.count == 3)
        #expect(value["a"]?[0] == .bool(true))
        #expect(value["a"]?[1] == .null)
        #expect(value["a"]?[2]?.stringValue == "x")
        #expect(value["a"]?[3] == nil)
        #expect(value["c"] == .object(JSONObject()))
        #expect(value["missing"] == nil)
    }

    @Test func emptyContainers() throws {
        #expect(try JSONValue(parsing: "[]") == .array([]))
        #expect(try JSONValue(parsing: "{ }") == .object(JSONObject()))
        #expect(try JSONValue(parsing: "[[],[[]]]") == .array([.array([]), .array([.array([])])]))
    }

    @Test func stringEscapes() throws {
        let value = try JSONValue(parsing: #""a\"b\\c\/d\b\f\n\r\t\u0041\u00e9\u4E2D""#)
        #expect(value.stringValue == "a\"b\\c/d\u{08}\u{0C}\n\r\tAé中")
    }

    @Test func surrogatePairs() throws {
        #expect(try JSONValue(parsing: #""\ud83d\ude00""#).stringValue == "😀")
        #expect(try JSONValue(parsing: #""\uD834\uDD1E x""#).stringValue == "𝄞 x")
        #expect(try JSONValue(parsing: #""\uDBFF\uDFFF""#).stringValue == "\u{10FFFF}")
    }

    @Test func rawUTF8AndNUL() throws {
        #expect(try JSONValue(parsing: "\"é中😀\"").stringValue == "é中😀")
        #expect(try JSONValue(parsing: #""a\u0000b""#).stringValue == "a\u{0}b")
    }

    @Test func byteOrderMarkIsSkipped() throws {
        #expect(try JSONValue(parsing: [0xEF, 0xBB, 0xBF] + Array("[1]".utf8)) == .array([.number(JSONNumber(1))]))
    }

    @Test func integers() throws {
        func int(_ text: String) throws -> Int? { try JSONValue(parsing: text).numberValue?.integer(as: Int.self) }
        #expect(try int("12") == 12)
        #expect(try int("-12") == -12)
        #expect(try int("-0") == 0)
        #expect(try int("1.0") == 1)
        #expect(try int("1E0") == 1)
        #expect(try int("1.0e1") == 10)
        #expect(try int("20e-1") == 2)
        #expect(try int("0.5e1") == 5)
        #expect(try int("0e999999999999999999999") == 0)
        #expect(try int("1.5") == nil)
        #expect(try int("1e-1") == nil)
        #expect(try int("9223372036854775807") == Int.max)
        #expect(try int("-9223372036854775808") == Int.min)
        #expect(try int("9223372036854775808") == nil)
        #expect(try int("-9223372036854775809") == nil)
        #expect(try int("1e19") == nil)
        #expect(try int("1e999999999999999999999") == nil)
        #expect(try int("100000000000000000000000000000000000000000000") == nil)
        let big = try JSONValue(parsing: "18446744073709551615").numberValue
        #expect(big?.integer(as: UInt64.self) == UInt64.max)
        #expect(big?.integer(as: Int64.self) == nil)
        #expect(try JSONValue(parsing: "-1").numberValue?.integer(as: UInt64.self) == nil)
        #expect(try JSONValue(parsing: "255").numberValue?.integer(as: UInt8.self) == 255)
        #expect(try JSONValue(parsing: "256").numberValue?.integer(as: UInt8.self) == nil)
        #expect(try JSONValue(parsing: "-128").numberValue?.integer(as: Int8.self) == -128)
    }

    @Test func floatingPoint() throws {
        func double(_ text: String) throws -> Double? { try JSONValue(parsing: text).numberValue?.doubleValue }
        #expect(try double("0.5") == 0.5)
        #expect(try double("-2.5e3") == -2500)
        #expect(try double("1E+2") == 100)
        #expect(try double("0.1") == 0.1)
        #expect(try double("1e-400") == 0)
        #expect(try double("1e400") == nil)
        #expect(try JSONValue(parsing: "1.5").numberValue?.isIntegral == false)
        #expect(try JSONValue(parsing: "1.50e1").numberValue?.isIntegral == true)
    }

    @Test func numberLiterals() {
        #expect(JSONNumber(literal: "1.5e-3")?.literal == "1.5e-3")
        #expect(JSONNumber(literal: "01") == nil)
        #expect(JSONNumber(literal: "1.") == nil)
        #expect(JSONNumber(literal: "+1") == nil)
        #expect(JSONNumber(literal: "") == nil)
        #expect(JSONNumber(-7).literal == "-7")
    }

    @Test func depthLimitIsInclusive() throws {
        let deep = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect(parseError(deep) == nil)
        #expect(parseError("[[1]]", maximumDepth: 2) == nil)
        #expect(parseError(#"{"a":{"b":1}}"#, maximumDepth: 2) == nil)
    }

    @Test func writingAndParsingAgainRoundTrips() throws {
        let text = #"{"s":"q\"b\\n\n\u0001é😀","n":[-1.5e3,0,true,false,null],"o":{"":{}}}"#
        let value = try JSONValue(parsing: text)
        #expect(try JSONValue(parsing: value.description) == value)
        #expect(value["s"]?.stringValue == "q\"b\\n\n\u{1}é😀")
    }
}

@Suite struct MalformedInput {
    /// Expects an error whose message contains `message`, at `line`:`column`.
    func expectError(_ text: String, _ message: String, line: Int = 1, column: Int, sourceLocation: SourceLocation = #_sourceLocation) {
        guard let error = parseError(text) else {
            Issue.record("parsed without error: \(text)", sourceLocation: sourceLocation)
            return
        }
        #expect(error.message.contains(message), "\(error)", sourceLocation: sourceLocation)
        #expect(error.line == line && error.column == column, "\(error)", sourceLocation: sourceLocation)
        #expect(error.description.hasPrefix("line \(error.line), column \(error.column): "), sourceLocation: sourceLocation)
    }

    @Test func emptyInput() {
        expectError("", "empty input", column: 1)
        expectError("  \n ", "empty input", line: 2, column: 2)
    }

    @Test func trailingGarbage() {
        expectError("{} x", "unexpected 'x' after the JSON value", column: 4)
        expectError("1 2", "unexpected '2' after the JSON value", column: 3)
        expectError("{}{}", "after the JSON value", column: 3)
        expectError("null\u{0}", "unexpected byte 0x00 after the JSON value", column: 5)
    }

    @Test func objects() {
        expectError("{", "expected a string key, found the end of the input", column: 2)
        expectError(#"{"a" 1}"#, "expected ':' after the key 'a', found '1'", column: 6)
        expectError(#"{"a":}"#, "expected a JSON value, found '}'", column: 6)
        expectError(#"{"a":1,}"#, "trailing comma", column: 8)
        expectError(#"{"a":1 "b":2}"#, "expected ',' or '}' after the value of 'a', found '\"'", column: 8)
        expectError("{a:1}", "expected a string key, found 'a'", column: 2)
        expectError(#"{"a":1,"a":2}"#, "duplicate key 'a'", column: 8)
        expectError("{\n  \"a\": 1,\n  \"b\": tru\n}", "invalid literal", line: 3, column: 8)
    }

    @Test func arrays() {
        expectError("[", "expected a JSON value, found the end of the input", column: 2)
        expectError("[1,]", "trailing comma", column: 4)
        expectError("[1 2]", "expected ',' or ']' after an array element, found '2'", column: 4)
        expectError("[,1]", "expected a JSON value, found ','", column: 2)
        expectError("[1", "found the end of the input", column: 3)
    }

    @Test func literals() {
        expectError("nul", "invalid literal", column: 1)
        expectError("truex", "invalid literal", column: 1)
        expectError("True", "expected a JSON value, found 'T'", column: 1)
        expectError("NaN", "expected a JSON value, found 'N'", column: 1)
        expectError("Infinity", "expected a JSON value, found 'I'", column: 1)
        expectError("// c\n1", "expected a JSON value, found '/'", column: 1)
    }

    @Test func numbers() {
        expectError("01", "leading zeros", column: 1)
        expectError("-01", "leading zeros", column: 1)
        expectError("-", "expected a digit after '-', found the end of the input", column: 2)
        expectError("-x", "expected a digit after '-'", column: 2)
        expectError("1.", "expected a digit after the decimal point", column: 3)
        expectError("1.e5", "expected a digit after the decimal point, found 'e'", column: 3)
        expectError("1e", "expected a digit in the exponent", column: 3)
        expectError("1e+", "expected a digit in the exponent", column: 4)
        expectError(".5", "expected a JSON value, found '.'", column: 1)
        expectError("+1", "expected a JSON value, found '+'", column: 1)
        expectError("0x10", "invalid number: unexpected 'x' after '0'", column: 2)
        expectError("1.2.3", "invalid number", column: 4)
    }

    @Test func strings() {
        expectError(#""abc"#, "unterminated string", column: 1)
        expectError(#"["abc\"#, "unterminated string", column: 6)
        expectError("\"a\nb\"", "control character U+000A must be escaped", column: 3)
        expectError("\"a\tb\"", "control character U+0009", column: 3)
        expectError(#""\x""#, "invalid escape: 'x' after a backslash", column: 2)
        expectError(#""\u12""#, "expected 4 hex digits", column: 2)
        expectError(#""\u12G4""#, "expected 4 hex digits", column: 2)
        expectError(#""\ud83d""#, "unpaired surrogate \u{5C}uD83D", column: 2)
        expectError(#""\ud83dx""#, "unpaired surrogate", column: 2)
        expectError(#""\ud83d\u0041""#, "followed by \u{5C}u0041", column: 2)
        expectError(#""\ude00""#, "unpaired surrogate \u{5C}uDE00", column: 2)
        expectError(#""ab\ude00""#, "low surrogate without a high surrogate", column: 4)
    }

    @Test func invalidUTF8() {
        func expectUTF8Error(_ inner: [UInt8], column: Int, sourceLocation: SourceLocation = #_sourceLocation) {
            let error = parseError([0x22] + inner + [0x22])
            #expect(error?.message.contains("invalid UTF-8") == true, "\(String(describing: error))", sourceLocation: sourceLocation)
            #expect(error?.column == column, "\(String(describing: error))", sourceLocation: sourceLocation)
        }
        expectUTF8Error([0xFF], column: 2)
        expectUTF8Error([0x61, 0x80], column: 3)             // lone continuation byte
        expectUTF8Error([0xC3], column: 2)                   // truncated
        expectUTF8Error([0xC0, 0xAF], column: 2)             // overlong
        expectUTF8Error([0xE0, 0x80, 0xAF], column: 2)       // overlong
        expectUTF8Error([0xED, 0xA0, 0x80], column: 2)       // encoded surrogate
        expectUTF8Error([0xF4, 0x90, 0x80, 0x80], column: 2) // above U+10FFFF
        expectUTF8Error([0xC3, 0xA9, 0xFF], column: 3)       // the column counts characters
        #expect(parseError([0xFF]).map(\.message) == "expected a JSON value, found byte 0xFF")
    }

    @Test func columnsCountCharactersAndLinesCountNewlines() {
        expectError("[\"é\", x]", "found 'x'", column: 7)
        expectError("\n\n   ?", "found '?'", line: 3, column: 4)
        expectError("[\r\n1,\r\n?]", "found '?'", line: 3, column: 1)
    }

    @Test func depthLimit() {
        let tooDeep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        let error = parseError(tooDeep)
        #expect(error?.message == "nesting deeper than 64 levels")
        #expect(error?.column == 65)
        #expect(parseError(#"{"a":{"b":{}}}"#, maximumDepth: 2)?.message == "nesting deeper than 2 levels")
        // Far deeper than any stack could recurse: refused at the limit, not a crash.
        let huge = String(repeating: "[{\"a\":", count: 200_000)
        #expect(parseError(huge)?.message == "nesting deeper than 64 levels")
    }
}

/// A small seeded generator (SplitMix64) so that failures reproduce.
private struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct RandomInput {
    /// Random bytes, and random mutations of valid documents, must parse or throw
    /// JSONParseError, never crash; what parses must write out and parse back equal.
    @Test(arguments: [1, 2, 3, 0xC0FFEE])
    func neverCrashes(seed: UInt64) throws {
        var random = SeededGenerator(state: seed)
        let alphabet = Array(#"{}[],:"\u0123456789abcdefABCDEF-+.eEtrunlfs \#n\#t"#.utf8) + [0x00, 0x1F, 0x80, 0xC3, 0xA9, 0xED, 0xF0, 0xFF]
        let seeds = [
            #"{"boot-source": {"kernel_image_path": "/vmlinux", "boot_args": "console=ttyS0"}, "machine-config": {"vcpu_count": 2, "mem_size_mib": 128, "smt": false}}"#,
            #"[1, -2.5e3, "\ud83d\ude00\n", null, true, {"a": [[], {}]}]"#,
            #""é\u00e9\"\\""#,
        ].map { Array($0.utf8) }
        var parsed = 0
        for round in 0..<3000 {
            var bytes: [UInt8]
            switch round % 3 {
            case 0:
                bytes = (0..<Int.random(in: 0...48, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            case 1:
                bytes = (0..<Int.random(in: 0...48, using: &random)).map { _ in alphabet.randomElement(using: &random)! }
            default:
                bytes = seeds.randomElement(using: &random)!
                for _ in 0..<Int.random(in: 1...4, using: &random) {
                    let position = Int.random(in: 0...bytes.count, using: &random)
                    switch Int.random(in: 0..<3, using: &random) {
                    case 0 where position < bytes.count: bytes.remove(at: position)
                    case 1 where position < bytes.count: bytes[position] = alphabet.randomElement(using: &random)!
                    default: bytes.insert(alphabet.randomElement(using: &random)!, at: position)
                    }
                }
            }
            do {
                let value = try JSONValue(parsing: bytes, maximumDepth: 8)
                parsed += 1
                #expect(try JSONValue(parsing: value.description, maximumDepth: 8) == value, "input: \(bytes)")
            } catch {
                #expect(error.line >= 1 && error.column >= 1 && error.offset <= bytes.count, "input: \(bytes)")
                #expect(!error.message.isEmpty)
            }
        }
        // The mutations leave some documents valid; a generator that never produced one
        // would not be testing the success path.
        #expect(parsed > 0)
    }
}
