import KasaTOML
import Testing

@Suite struct TOMLParserTests {
    @Test func readsKataShapedConfiguration() throws {
        let document = try TOMLDocument(parsing: """
            # Kata-style file
            [hypervisor.kasa]
            path = "/usr/local/bin/kasa-vmm"   # trailing comment
            kernel_params = 'quiet  init=/x'
            default_vcpus = 2
            default_memory = 1_024
            enable_annotations = [
                "a",
                "b", # comment inside
            ]

            [agent.kata]
            dial_timeout = 0x1e
            debug_console_enabled = true
            ratio = -1.5
            "quoted key" = "tab\\there \\u00e9"
            """)
        let hypervisor = try #require(document["hypervisor.kasa"])
        #expect(hypervisor["path"] == .string("/usr/local/bin/kasa-vmm"))
        #expect(hypervisor["kernel_params"] == .string("quiet  init=/x"))
        #expect(hypervisor["default_vcpus"] == .integer(2))
        #expect(hypervisor["default_memory"] == .integer(1024))
        #expect(hypervisor["enable_annotations"] == .array([.string("a"), .string("b")]))
        #expect(hypervisor.entries.map(\.line) == [3, 4, 5, 6, 7])
        let agent = try #require(document["agent.kata"])
        #expect(agent["dial_timeout"] == .integer(30))
        #expect(agent["debug_console_enabled"] == .boolean(true))
        #expect(agent["ratio"] == .float(-1.5))
        #expect(agent["quoted key"] == .string("tab\there é"))
        #expect(document.tables.map(\.path) == ["hypervisor.kasa", "agent.kata"])
    }

    @Test func dottedKeysAndRootKeys() throws {
        let document = try TOMLDocument(parsing: "title = \"x\"\n[a]\nb.c = 1\n")
        #expect(document[""]?["title"] == .string("x"))
        #expect(document["a.b"]?["c"] == .integer(1))
    }

    @Test(arguments: [
        ("[a]\nx = 1\nx = 2\n", 3, "defined twice"),
        ("[a]\n[a]\n", 2, "defined twice"),
        ("x = \"open\n", 1, "unterminated string"),
        ("x = 01\n", 1, "leading zeros"),
        ("x = {a = 1}\n", 1, "inline tables"),
        ("x = 1979-05-27\n", 1, "dates"),
        ("x = [1, 2\n", 2, "expected ',' or ']' in an array"),
        ("x = 1 y = 2\n", 1, "end of the line"),
        ("[[servers]]\n", 1, "arrays of tables"),
        ("= 1\n", 1, "expected a key"),
        ("x = \"\"\"a\"\"\"\n", 1, "multi-line strings"),
        ("x = yes\n", 1, "expected a value"),
        ("x = 99999999999999999999\n", 1, "out of range"),
        ("x = \"\\q\"\n", 1, "unknown escape"),
    ])
    func malformedInputNamesTheLine(text: String, line: Int, reason: String) {
        do {
            _ = try TOMLDocument(parsing: text)
            Issue.record("accepted \(text.debugDescription)")
        } catch {
            #expect(error.line == line, "\(error)")
            #expect(error.reason.contains(reason), "\(error)")
        }
    }

    @Test func printsValuesBackAsTOML() throws {
        let value = TOMLValue.array([.string("a\"b\\c\n"), .integer(-3), .boolean(false)])
        #expect(value.description == #"["a\"b\\c\n", -3, false]"#)
        let reparsed = try TOMLDocument(parsing: "v = \(value)\n")
        #expect(reparsed[""]?["v"] == value)
    }
}
