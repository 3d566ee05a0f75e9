import GuestMemory

/// Packets to the guest (the rx queue): RSTs for dead streams and control packets first,
/// then data from connections with credit, round robin. Data is read from a host socket only
/// when an rx buffer and guest credit are both at hand, so what the guest cannot take yet
/// stays in the socket.
extension VsockDevice {
    enum RxFill {
        case filled(Int)
        /// The chain cannot hold what is next: return it empty.
        case unusable
        /// Nothing to send after all: keep the chain for later.
        case nothing
    }

    var hasPendingRx: Bool { !resetQueue.isEmpty || !controlQueue.isEmpty || !dataQueue.isEmpty }

    func processRx() {
        guard let context else { return }
        let queue = context.queues[VsockDevice.rxQueue]
        guard queue.ready else { return }
        var pushed = false
        filling: while hasPendingRx {
            let chain: DescriptorChain
            if let held = heldRxChain {
                chain = held
                heldRxChain = nil
            } else {
                do {
                    guard let next = try queue.pop(memory: context.memory) else { break }
                    chain = next
                } catch {
                    context.queueBroken(VsockDevice.rxQueue, error)
                    break  // a broken ring
                }
            }
            let length: Int
            switch fill(chain, memory: context.memory) {
            case .filled(let count): length = count
            case .unusable: length = 0
            case .nothing:
                heldRxChain = chain
                break filling
            }
            do { try queue.pushUsed(head: chain.head, length: UInt32(length), memory: context.memory) } catch { break }
            pushed = true
        }
        if pushed { context.signalUsed(VsockDevice.rxQueue) }
    }

    /// Writes the next packet into `chain`.
    func fill(_ chain: DescriptorChain, memory: GuestMemory) -> RxFill {
        let room = chain.writableLength
        guard room >= VsockHeader.size else { return .unusable }
        while true {
            if !resetQueue.isEmpty {
                let key = resetQueue.removeFirst()
                let header = VsockHeader(sourceCID: VsockDevice.hostCID, destinationCID: guestCID,
                                         sourcePort: key.hostPort, destinationPort: key.guestPort,
                                         operation: VsockOperation.reset.rawValue)
                return write(header.bytes, into: chain, memory: memory)
            }
            if let id = controlQueue.first {
                guard let connection = connectionsByID[id], let (operation, flags) = connection.takeControl() else {
                    controlQueue.removeFirst()
                    connectionsByID[id]?.inControlQueue = false
                    continue
                }
                if connection.pendingControl.isEmpty {
                    controlQueue.removeFirst()
                    connection.inControlQueue = false
                }
                return write(header(for: connection, operation, flags: flags).bytes, into: chain, memory: memory)
            }
            guard let id = dataQueue.first else { return .nothing }
            guard room > VsockHeader.size else { return .unusable }
            dataQueue.removeFirst()
            guard let connection = connectionsByID[id] else { continue }
            connection.inDataQueue = false
            guard connection.wantsRead else {
                updateInterest(connection)
                continue
            }
            let credit = Int(connection.peerCredit)
            guard credit > 0 else {
                // Data waits in the socket until the guest makes room; ask it once.
                connection.creditBlocked = true
                if !connection.creditRequested {
                    connection.creditRequested = true
                    queueControl(connection, .creditRequest)
                }
                updateInterest(connection)
                continue
            }
            let wanted = min(credit, room - VsockHeader.size, tuning.maximumPayload)
            switch VsockUnixSocket.receive(connection.fd, into: &scratch, count: wanted) {
            case .bytes(let count):
                var packet = header(for: connection, .readWrite, length: UInt32(count)).bytes
                packet += scratch[0..<count]
                connection.transmitCount &+= UInt32(count)
                // Keep reading this socket after the others had their turn.
                connection.inDataQueue = true
                dataQueue.append(id)
                let result = write(packet, into: chain, memory: memory)
                if case .unusable = result { close(connection, sendReset: true) }
                return result
            case .wouldBlock:
                updateInterest(connection)
            case .endOfFile:
                hostReachedEndOfFile(connection)
            case .failed:
                close(connection, sendReset: true)
            }
        }
    }

    /// A header from the host end of `connection`, carrying our current credit.
    func header(for connection: VsockConnection, _ operation: VsockOperation, flags: UInt32 = 0, length: UInt32 = 0) -> VsockHeader {
        connection.advertisedForwardCount = connection.forwardCount
        return VsockHeader(sourceCID: VsockDevice.hostCID, destinationCID: guestCID,
                           sourcePort: connection.key.hostPort, destinationPort: connection.key.guestPort,
                           length: length, operation: operation.rawValue, flags: flags,
                           bufferAllocation: tuning.bufferAllocation, forwardCount: connection.forwardCount)
    }

    private func write(_ bytes: [UInt8], into chain: DescriptorChain, memory: GuestMemory) -> RxFill {
        guard let written = try? chain.write(bytes, memory: memory) else { return .unusable }
        return .filled(written)
    }
}
