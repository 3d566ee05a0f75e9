import GuestMemory

/// Packets from the guest (the tx queue). Anything malformed is dropped, or answered with
/// RST when it names a stream; nothing the guest writes can crash the device.
extension VsockDevice {
    func processTx() {
        guard let context else { return }
        let queue = context.queues[VsockDevice.txQueue]
        guard queue.ready else { return }
        var pushed = false
        while let chain = context.nextChain(VsockDevice.txQueue) {
            handleTxChain(chain, memory: context.memory)
            do { try queue.pushUsed(head: chain.head, length: 0, memory: context.memory) } catch { break }
            pushed = true
        }
        if pushed { context.signalUsed(VsockDevice.txQueue) }
    }

    func handleTxChain(_ chain: DescriptorChain, memory: GuestMemory) {
        let available = chain.readableLength
        guard available >= VsockHeader.size,
              let bytes = try? chain.readReadable(memory: memory, offset: 0, count: VsockHeader.size),
              let header = VsockHeader(bytes: bytes) else { return }
        handlePacket(header, payloadAvailable: available - VsockHeader.size) {
            try chain.readReadable(memory: memory, offset: VsockHeader.size, count: Int(header.length))
        }
    }

    /// Handles one guest packet; `readPayload` fetches its `length` payload bytes.
    func handlePacket(_ header: VsockHeader, payloadAvailable: Int, readPayload: () throws -> [UInt8]) {
        // Spoofed or misdirected addresses name no stream of ours: drop silently.
        guard header.sourceCID == guestCID, header.destinationCID == VsockDevice.hostCID else { return }
        let key = VsockConnectionKey(hostPort: header.destinationPort, guestPort: header.sourcePort)
        guard header.type == VsockHeader.typeStream,
              Int(header.length) <= tuning.maximumPayload, Int(header.length) <= payloadAvailable,
              let operation = VsockOperation(rawValue: header.operation) else {
            return refuse(header, key: key)
        }
        let connection = connections[key]
        connection?.lastActivity = VsockDevice.now()
        switch operation {
        case .request:
            guestRequested(header, key: key)
        case .reset:
            if let connection { close(connection, sendReset: false) }
        case .response, .readWrite, .shutdown, .creditUpdate, .creditRequest:
            guard let connection else { return queueReset(key) }
            connection.updatePeerCredit(from: header)
            if connection.peerCredit > 0 {
                connection.creditRequested = false
                connection.creditBlocked = false
            }
            switch operation {
            case .response: guestAccepted(connection)
            case .readWrite: guestSent(header, to: connection, readPayload: readPayload)
            case .shutdown: guestShutDown(connection, flags: header.flags)
            case .creditRequest:
                queueControl(connection, .creditUpdate)
                updateInterest(connection)
            default: updateInterest(connection)
            }
        }
    }

    /// Answers a malformed packet with RST (never an RST with an RST), closing the stream.
    func refuse(_ header: VsockHeader, key: VsockConnectionKey) {
        guard header.operation != VsockOperation.reset.rawValue else { return }
        if let connection = connections[key] {
            close(connection, sendReset: true)
        } else {
            queueReset(key)
        }
    }

    /// The guest connects to host port P: bridge to `<udsPath>_P`, or RST if nobody listens.
    func guestRequested(_ header: VsockHeader, key: VsockConnectionKey) {
        if let existing = connections[key] {
            // A second REQUEST for a live stream: the guest lost track; reset both sides.
            return close(existing, sendReset: true)
        }
        guard connections.count + pendingClients.count < tuning.maximumConnections else { return queueReset(key) }
        switch VsockUnixSocket.connect(path: "\(udsPath)_\(header.destinationPort)") {
        case .failure:
            queueReset(key)
        case .success(let fd):
            let connection = VsockConnection(id: makeID(), key: key, fd: fd, state: .established)
            connection.updatePeerCredit(from: header)
            connection.lastActivity = VsockDevice.now()
            addConnection(connection)
            queueControl(connection, .response)
            updateInterest(connection)
        }
    }

    /// RESPONSE to our REQUEST: tell the host client `OK <port>` and start moving bytes.
    func guestAccepted(_ connection: VsockConnection) {
        guard connection.state == .requestSent else { return close(connection, sendReset: true) }
        connection.state = .established
        let reply = VsockConnectLine.reply(hostPort: connection.key.hostPort)
        connection.toHost.append(contentsOf: reply)
        connection.preambleBytes += reply.count
        guard flush(connection) != nil else { return }
        settle(connection)
    }

    func guestSent(_ header: VsockHeader, to connection: VsockConnection, readPayload: () throws -> [UInt8]) {
        guard connection.state == .established, connection.guestShutdown & VsockShutdown.send == 0 else {
            return close(connection, sendReset: true)
        }
        guard header.length > 0 else { return updateInterest(connection) }
        // Our advertised buf_alloc bounds what the guest may have outstanding.
        guard connection.bufferedGuestBytes + Int(header.length) <= Int(tuning.bufferAllocation),
              let payload = try? readPayload(), payload.count == Int(header.length) else {
            return close(connection, sendReset: true)
        }
        connection.receiveCount &+= header.length
        connection.toHost.append(contentsOf: payload)
        guard flush(connection) != nil else { return }
        settle(connection)
    }

    func guestShutDown(_ connection: VsockConnection, flags: UInt32) {
        guard connection.state == .established else { return close(connection, sendReset: true) }
        connection.guestShutdown |= flags & VsockShutdown.both
        if connection.guestShutdown == VsockShutdown.both && !connection.toHost.isEmpty {
            // Closes once the host socket takes the rest, or after the grace period.
            armTimer(connection, after: tuning.closeGraceNanoseconds)
        }
        settle(connection)
    }
}

extension DescriptorChain {
    /// `count` bytes of the readable buffers starting `offset` bytes in, across descriptors.
    func readReadable(memory: GuestMemory, offset: Int, count: Int) throws -> [UInt8] {
        guard offset >= 0, count >= 0, offset + count <= readableLength else {
            throw VirtioDeviceError.malformedRequest("read past the readable buffers")
        }
        var result: [UInt8] = []
        result.reserveCapacity(count)
        var skip = offset
        for descriptor in readable where result.count < count {
            let length = Int(descriptor.length)
            if skip >= length {
                skip -= length
                continue
            }
            let take = min(length - skip, count - result.count)
            result += try memory.readBytes(at: descriptor.address.advanced(by: UInt64(skip)), count: take)
            skip = 0
        }
        return result
    }
}
