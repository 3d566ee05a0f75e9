#if canImport(Glibc)
import Glibc
#endif

/// The host side of the bridge: the listener, the CONNECT handshake, host socket events,
/// delivering guest data, closing and timers. Everything runs with `lock` held.
extension VsockDevice {
    static let pollIn = Int16(POLLIN)
    static let pollOut = Int16(POLLOUT)

    // MARK: Listener and handshake

    func registerListener() {
        guard let listener, !listenerRegistered else { return }
        listenerRegistered = true
        eventLoop.register(listener.fd, events: VsockDevice.pollIn) { [weak self] _ in
            self?.backend { $0.acceptClients() }
        }
    }

    func acceptClients() {
        guard let listener else { return }
        while true {
            switch VsockUnixSocket.accept(listener.fd) {
            case .socket(let fd):
                guard connections.count + pendingClients.count < tuning.maximumConnections else {
                    VsockUnixSocket.close(fd)
                    continue
                }
                let id = makeID()
                pendingClients[id] = VsockPendingClient(id: id, fd: fd)
                eventLoop.register(fd, events: VsockDevice.pollIn) { [weak self] _ in
                    self?.backend { $0.readConnectLine(clientID: id) }
                }
            case .wouldBlock:
                return
            case .failed:
                // Out of descriptors or similar: stop watching (poll would report the listener
                // ready forever) and try again shortly.
                eventLoop.unregister(listener.fd)
                listenerRegistered = false
                schedule(after: 100_000_000) { $0.registerListener() }
                return
            }
        }
    }

    /// Reads the `CONNECT <port>\n` line without taking any byte after the newline: peek,
    /// then consume exactly up to the newline (or all of a partial line).
    func readConnectLine(clientID: UInt64) {
        guard var client = pendingClients[clientID] else { return }
        let room = VsockConnectLine.maximumLength + 1 - client.line.count
        switch VsockUnixSocket.receive(client.fd, into: &scratch, count: room, peek: true) {
        case .wouldBlock:
            return
        case .endOfFile, .failed:
            dropPendingClient(clientID)
        case .bytes(let count):
            let peeked = Array(scratch[0..<count])
            let newline = peeked.firstIndex(of: UInt8(ascii: "\n"))
            let take = newline.map { $0 + 1 } ?? count
            guard VsockUnixSocket.receive(client.fd, into: &scratch, count: take) == .bytes(take) else {
                return dropPendingClient(clientID)
            }
            client.line += peeked[0..<(newline ?? count)]
            guard let newline else {
                if client.line.count >= VsockConnectLine.maximumLength { return dropPendingClient(clientID) }
                pendingClients[clientID] = client
                return
            }
            _ = newline
            eventLoop.unregister(client.fd)
            pendingClients[clientID] = nil
            guard let port = VsockConnectLine.port(in: client.line) else {
                VsockUnixSocket.close(client.fd)
                return
            }
            startHostConnection(fd: client.fd, guestPort: port)
        }
    }

    func dropPendingClient(_ id: UInt64) {
        guard let client = pendingClients.removeValue(forKey: id) else { return }
        eventLoop.unregister(client.fd)
        VsockUnixSocket.close(client.fd)
    }

    /// A host port no live connection uses, from 1024 upward.
    func allocateHostPort() -> UInt32? {
        let used = Set(connections.keys.map(\.hostPort))
        var candidate = nextHostPort
        for _ in 0...used.count {
            if candidate < VsockDevice.firstHostPort { candidate = VsockDevice.firstHostPort }
            if !used.contains(candidate) {
                nextHostPort = candidate &+ 1
                return candidate
            }
            candidate &+= 1
        }
        return nil
    }

    /// The client asked for guest `guestPort`: send REQUEST and wait for the guest's answer.
    func startHostConnection(fd: Int32, guestPort: UInt32) {
        guard let hostPort = allocateHostPort() else {
            VsockUnixSocket.close(fd)
            return
        }
        let key = VsockConnectionKey(hostPort: hostPort, guestPort: guestPort)
        let connection = VsockConnection(id: makeID(), key: key, fd: fd, state: .requestSent)
        connection.requestDeadline = VsockDevice.now() + tuning.requestTimeoutNanoseconds
        connection.lastActivity = VsockDevice.now()
        connections[key] = connection
        connectionsByID[connection.id] = connection
        queueControl(connection, .request)
        armTimer(connection, after: tuning.requestTimeoutNanoseconds)
    }

    // MARK: Connections

    func addConnection(_ connection: VsockConnection) {
        connections[connection.key] = connection
        connectionsByID[connection.id] = connection
    }

    func queueControl(_ connection: VsockConnection, _ control: VsockPendingControl, shutdownFlags: UInt32 = 0) {
        guard connection.state != .closed else { return }
        connection.pendingControl.insert(control)
        if control == .shutdown { connection.shutdownFlags |= shutdownFlags }
        if !connection.inControlQueue {
            connection.inControlQueue = true
            controlQueue.append(connection.id)
        }
    }

    func queueReset(_ key: VsockConnectionKey) {
        guard resetQueue.count < tuning.maximumPendingResets else { return }
        resetQueue.append(key)
    }

    /// Closes the host socket and forgets the connection; `sendReset` tells the guest.
    func close(_ connection: VsockConnection, sendReset: Bool) {
        guard connection.state != .closed else { return }
        if connection.registeredEvents != 0 { eventLoop.unregister(connection.fd) }
        connection.registeredEvents = 0
        VsockUnixSocket.close(connection.fd)
        connection.state = .closed
        connections[connection.key] = nil
        connectionsByID[connection.id] = nil
        if sendReset { queueReset(connection.key) }
    }

    /// Watches the host socket for what the connection can use now: input while it may read,
    /// output while guest data waits. Unregisters when neither (poll would report a hung-up
    /// socket forever otherwise).
    func updateInterest(_ connection: VsockConnection) {
        guard connection.state != .closed else { return }
        var events: Int16 = 0
        if connection.wantsRead { events |= VsockDevice.pollIn }
        if !connection.toHost.isEmpty { events |= VsockDevice.pollOut }
        guard events != connection.registeredEvents else { return }
        connection.registeredEvents = events
        if events == 0 {
            eventLoop.unregister(connection.fd)
        } else {
            let id = connection.id
            eventLoop.register(connection.fd, events: events) { [weak self] revents in
                self?.backend { $0.connectionEvent(id: id, revents: revents) }
            }
        }
    }

    func connectionEvent(id: UInt64, revents: Int16) {
        guard let connection = connectionsByID[id] else { return }
        if revents & Int16(POLLNVAL) != 0 { return close(connection, sendReset: true) }
        let watched = connection.registeredEvents
        var progress = 0
        if !connection.toHost.isEmpty {
            guard let flushed = flush(connection) else { return }
            progress = flushed
        }
        if revents & (VsockDevice.pollIn | Int16(POLLHUP) | Int16(POLLERR)) != 0, connection.wantsRead {
            connection.inDataQueue = true
            dataQueue.append(id)
        } else if revents & (Int16(POLLHUP) | Int16(POLLERR)) != 0, watched & VsockDevice.pollIn == 0, progress == 0 {
            // Hung up while we only waited to write, and nothing could be written.
            return close(connection, sendReset: true)
        }
        settle(connection)
    }

    /// Writes queued bytes to the host socket; returns how many went, or nil if the socket
    /// failed (the connection is then closed and the guest told).
    @discardableResult
    func flush(_ connection: VsockConnection) -> Int? {
        var total = 0
        writing: while !connection.toHost.isEmpty {
            switch VsockUnixSocket.send(connection.fd, connection.toHost.pending) {
            case .bytes(let count):
                guard count > 0 else { break writing }
                connection.toHost.removeFirst(count)
                let own = min(count, connection.preambleBytes)
                connection.preambleBytes -= own
                connection.forwardCount &+= UInt32(count - own)
                total += count
            case .wouldBlock, .endOfFile:
                break writing
            case .failed:
                close(connection, sendReset: true)
                return nil
            }
        }
        if total > 0 {
            connection.lastActivity = VsockDevice.now()
            if connection.forwardCount &- connection.advertisedForwardCount >= tuning.creditUpdateThreshold {
                queueControl(connection, .creditUpdate)
            }
        }
        return total
    }

    /// Applies the consequences of the connection's shutdown state once its buffers allow:
    /// half-close toward the host, close when both directions are done, and re-arm polling.
    func settle(_ connection: VsockConnection) {
        guard connection.state == .established else { return updateInterest(connection) }
        let drained = connection.toHost.isEmpty
        let guestDone = connection.guestShutdown & VsockShutdown.send != 0
        if drained && guestDone && !connection.hostWriteClosed {
            VsockUnixSocket.shutdownWrite(connection.fd)
            connection.hostWriteClosed = true
        }
        if drained && (connection.guestShutdown == VsockShutdown.both || (guestDone && connection.hostEndOfFile)) {
            return close(connection, sendReset: true)
        }
        updateInterest(connection)
    }

    /// The host client will send nothing more: tell the guest, then wait (bounded) for it.
    func hostReachedEndOfFile(_ connection: VsockConnection) {
        guard !connection.hostEndOfFile else { return }
        connection.hostEndOfFile = true
        connection.lastActivity = VsockDevice.now()
        if connection.guestShutdown & VsockShutdown.send == 0 {
            queueControl(connection, .shutdown, shutdownFlags: VsockShutdown.send)
            armTimer(connection, after: tuning.closeGraceNanoseconds)
        }
        settle(connection)
    }

    // MARK: Timers

    func armTimer(_ connection: VsockConnection, after nanoseconds: UInt64) {
        guard !connection.timerArmed else { return }
        connection.timerArmed = true
        let id = connection.id
        schedule(after: nanoseconds) { $0.timerFired(connectionID: id) }
    }

    /// Gives up on a REQUEST the guest never answered, and on closing connections the guest
    /// (or a host client that stopped reading) left idle for the grace period.
    func timerFired(connectionID: UInt64) {
        guard let connection = connectionsByID[connectionID] else { return }
        connection.timerArmed = false
        let now = VsockDevice.now()
        if connection.state == .requestSent {
            if now >= connection.requestDeadline { return close(connection, sendReset: true) }
            return armTimer(connection, after: connection.requestDeadline - now)
        }
        guard connection.isClosing else { return }
        let idle = now &- connection.lastActivity
        if idle >= tuning.closeGraceNanoseconds { return close(connection, sendReset: true) }
        armTimer(connection, after: tuning.closeGraceNanoseconds - idle)
    }
}
