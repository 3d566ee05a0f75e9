import LegacyDevices
import Testing
import HostOS

/// Collects what a device reports, for assertions.
final class Recorder: @unchecked Sendable {
    private let lock = Lock()
    private var bytesStorage: [UInt8] = []
    private var levelsStorage: [Bool] = []
    var bytes: [UInt8] { lock.withLock { bytesStorage } }
    var levels: [Bool] { lock.withLock { levelsStorage } }
    func output(_ bytes: [UInt8]) { lock.withLock { bytesStorage += bytes } }
    func level(_ high: Bool) { lock.withLock { levelsStorage.append(high) } }
}

@Suite struct Serial16550Tests {
    let recorder = Recorder()
    let serial: Serial16550

    init() {
        let recorder = self.recorder
        serial = Serial16550(output: { recorder.output($0) }, interrupt: { recorder.level($0) })
    }

    @Test func transmitsWhatTheGuestWrites() {
        for byte in "hi\n".utf8 { serial.write(offset: 0, size: 1, value: UInt32(byte)) }
        #expect(recorder.bytes == Array("hi\n".utf8))
        #expect(serial.read(offset: 5, size: 1) & 0x60 == 0x60)  // THR and transmitter empty
    }

    @Test func divisorLatchWritesAreNotTransmitted() {
        serial.write(offset: 3, size: 1, value: 0x80)
        serial.write(offset: 0, size: 1, value: 0x01)
        serial.write(offset: 1, size: 1, value: 0x00)
        #expect(serial.read(offset: 0, size: 1) == 0x01)
        serial.write(offset: 3, size: 1, value: 0x03)
        #expect(recorder.bytes.isEmpty)
    }

    @Test func loopbackMirrorsModemControlAsTheLinuxProbeExpects() {
        serial.write(offset: 4, size: 1, value: 0x10 | 0x0A)  // LOOP | RTS | OUT2
        #expect(serial.read(offset: 6, size: 1) & 0xF0 == 0x90)
        serial.write(offset: 0, size: 1, value: 0x5A)
        #expect(recorder.bytes.isEmpty)
        #expect(serial.read(offset: 0, size: 1) == 0x5A)
    }

    @Test func scratchRegisterHoldsItsValue() {
        serial.write(offset: 7, size: 1, value: 0xA5)
        #expect(serial.read(offset: 7, size: 1) == 0xA5)
    }

    @Test func inputRaisesDataReadyAndTheInterrupt() {
        serial.write(offset: 4, size: 1, value: 0x08)  // OUT2 routes the interrupt
        serial.write(offset: 1, size: 1, value: 0x01)  // received-data interrupt on
        #expect(serial.read(offset: 5, size: 1) & 1 == 0)
        #expect(serial.enqueueInput(Array("ok".utf8)) == 2)
        #expect(recorder.levels == [true])
        #expect(serial.read(offset: 2, size: 1) & 0x0F == 0x04)
        #expect(serial.read(offset: 5, size: 1) & 1 == 1)
        #expect(serial.read(offset: 0, size: 1) == UInt32(UInt8(ascii: "o")))
        #expect(serial.read(offset: 0, size: 1) == UInt32(UInt8(ascii: "k")))
        #expect(serial.read(offset: 5, size: 1) & 1 == 0)
        #expect(recorder.levels == [true, false])
        #expect(serial.read(offset: 2, size: 1) & 0x01 == 0x01)
    }

    @Test func enablingTransmitInterruptRaisesItUntilAcknowledged() {
        serial.write(offset: 4, size: 1, value: 0x08)
        serial.write(offset: 1, size: 1, value: 0x02)
        #expect(recorder.levels == [true])
        #expect(serial.read(offset: 2, size: 1) & 0x0F == 0x02)
        #expect(recorder.levels == [true, false])
    }

    @Test func interruptStaysLowWithoutOUT2() {
        serial.write(offset: 1, size: 1, value: 0x01)
        serial.enqueueInput([1])
        #expect(recorder.levels.isEmpty)
    }

    @Test func inputBeyondTheFIFOIsLeftForLater() {
        let accepted = serial.enqueueInput([UInt8](repeating: 0x41, count: 100))
        #expect(accepted == 64)
        #expect(!serial.hasRoomForInput)
        _ = serial.read(offset: 0, size: 1)
        #expect(serial.hasRoomForInput)
    }
}

@Suite struct I8042Tests {
    @Test func resetCommandOnTheCommandPortResets() {
        let recorder = Recorder()
        let controller = I8042Controller(onReset: { recorder.level(true) })
        controller.write(offset: 0, size: 1, value: 0xFE)  // data port: not a reset
        controller.write(offset: 4, size: 1, value: 0xAA)
        #expect(recorder.levels.isEmpty)
        controller.write(offset: 4, size: 1, value: 0xFE)
        #expect(recorder.levels == [true])
        #expect(controller.read(offset: 4, size: 1) == 0)
    }
}

/// A UART interrupt whose edge the guest never serviced is raised again: the line stays
/// high after a lost edge, and Linux's 8250 driver would then never send user-space
/// output again.
@Suite struct SerialReassertionTests {
    final class Line: @unchecked Sendable {
        private let lock = Lock()
        private var changes: [Bool] = []
        func record(_ high: Bool) { lock.withLock { changes.append(high) } }
        var history: [Bool] { lock.withLock { changes } }
    }

    @Test func anUnservicedLineIsRaisedAgainOnlyAfterItsTimeout() {
        let line = Line()
        let serial = Serial16550(output: { _ in }, interrupt: { line.record($0) })
        serial.write(offset: 4, size: 1, value: 0x08)  // OUT2: the line reaches the bus
        serial.write(offset: 1, size: 1, value: 0x02)  // THRE interrupt on: raised
        #expect(line.history == [true])
        #expect(!serial.reassertIfUnserviced(now: 1_000, timeout: 500), "the first look only starts the clock")
        #expect(!serial.reassertIfUnserviced(now: 1_400, timeout: 500))
        #expect(serial.reassertIfUnserviced(now: 1_600, timeout: 500))
        #expect(line.history == [true, false, true], "a new edge: low, then high")
        #expect(serial.interruptState.reassertions == 1)

        // The guest services it (reads IIR): the line drops, and nothing is re-raised.
        _ = serial.read(offset: 2, size: 1)
        #expect(line.history.last == false)
        #expect(!serial.reassertIfUnserviced(now: 5_000, timeout: 500))
        #expect(!serial.reassertIfUnserviced(now: 9_000, timeout: 500))
        #expect(line.history == [true, false, true, false])
    }

    @Test func aLineThatWentLowAndHighBetweenLooksStartsItsClockAgain() {
        let line = Line()
        let serial = Serial16550(output: { _ in }, interrupt: { line.record($0) })
        serial.write(offset: 4, size: 1, value: 0x08)
        serial.write(offset: 1, size: 1, value: 0x02)
        _ = serial.reassertIfUnserviced(now: 1_000, timeout: 500)
        _ = serial.read(offset: 2, size: 1)  // serviced: low
        serial.write(offset: 0, size: 1, value: 0x41)  // a byte sent: THRE again, high
        #expect(!serial.reassertIfUnserviced(now: 1_600, timeout: 500), "a fresh edge is not an old one")
        #expect(serial.reassertIfUnserviced(now: 2_200, timeout: 500))
    }
}
