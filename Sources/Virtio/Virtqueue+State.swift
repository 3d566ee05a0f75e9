import GuestMemory

extension Virtqueue {
    /// What the driver configured and how far the device got, for snapshot and restore.
    public struct State: Sendable, Equatable {
        public var size: UInt16
        public var ready: Bool
        public var descriptorTable: UInt64
        public var availableRing: UInt64
        public var usedRing: UInt64
        public var eventIndex: Bool
        public var nextAvailable: UInt16
        public var nextUsed: UInt16
        public var lastSignalledUsed: UInt16

        public init(size: UInt16, ready: Bool, descriptorTable: UInt64, availableRing: UInt64, usedRing: UInt64,
                    eventIndex: Bool, nextAvailable: UInt16, nextUsed: UInt16, lastSignalledUsed: UInt16) {
            self.size = size
            self.ready = ready
            self.descriptorTable = descriptorTable
            self.availableRing = availableRing
            self.usedRing = usedRing
            self.eventIndex = eventIndex
            self.nextAvailable = nextAvailable
            self.nextUsed = nextUsed
            self.lastSignalledUsed = lastSignalledUsed
        }
    }

    /// Called under the transport's lock, like every queue access.
    public func captureState() -> State {
        State(size: size, ready: ready, descriptorTable: descriptorTable.value, availableRing: availableRing.value,
              usedRing: usedRing.value, eventIndex: eventIndex, nextAvailable: nextAvailable, nextUsed: nextUsed,
              lastSignalledUsed: lastSignalledUsed)
    }

    /// Takes a captured state; a ready queue's rings are checked against `memory` as at
    /// activation, so a damaged snapshot cannot point the device outside guest RAM.
    public func restore(_ state: State, memory: GuestMemory) throws {
        size = state.size
        ready = state.ready
        descriptorTable = GuestAddress(state.descriptorTable)
        availableRing = GuestAddress(state.availableRing)
        usedRing = GuestAddress(state.usedRing)
        eventIndex = state.eventIndex
        nextAvailable = state.nextAvailable
        nextUsed = state.nextUsed
        lastSignalledUsed = state.lastSignalledUsed
        if ready { try validate(memory: memory) }
    }
}
