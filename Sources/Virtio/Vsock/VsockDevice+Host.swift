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
                // A client that never finishes its CONNECT line does not keep a slot forever.
                schedule(after: tuning.requestTimeoutNanoseconds) { $0.dropPendingClient(id) }
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
            guard newline != nil else {
                if client.line.count >= VsockConnectLine.maximumLength { return dropPendingClient(clientID) }
                pendingClients[clientID] = client
                return
            }
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
        if connection.registeredEvents != nil { eventLoop.unregister(connection.fd) }
        connection.registeredEvents = nil
        VsockUnixSocket.close(connection.fd)
        connection.state = .closed
        connections[connection.key] = nil
        connectionsByID[connection.id] = nil
        if sendReset { queueReset(connection.key) }
    }

    /// Watches the host socket for what the connection can use now: input while it may read,
    /// output while guest data waits, just hang-up (events 0) after the client half-closed.
    /// Unregisters otherwise: poll would report a hung-up socket forever.
    func updateInterest(_ connection: VsockConnection) {
        guard connection.state != .closed else { return }
        var events: Int16 = 0
        if connection.wantsRead { events |= VsockDevice.pollIn }
        if !connection.toHost.isEmpty { events |= VsockDevice.pollOut }
        let desired: Int16? = events != 0 || connection.wantsHangUpNotice ? events : nil
        guard desired != connection.registeredEvents else { return }
        connection.registeredEvents = desired
        if let desired {
            let id = connection.id
            eventLoop.register(connection.fd, events: desired) { [weak self] revents in
                self?.backend { $0.connectionEvent(id: id, revents: revents) }
            }
        } else {
            eventLoop.unregister(connection.fd)
        }
    }

    func connectionEvent(id: UInt64, revents: Int16) {
        guard let connection = connectionsByID[id] else { return }
        if revents & Int16(POLLNVAL) != 0 { return close(connection, sendReset: true) }
        let watched = connection.registeredEvents ?? 0
        let hangUp = revents & (Int16(POLLHUP) | Int16(POLLERR)) != 0
        let waitingToWrite = !connection.toHost.isEmpty
        var progress = 0
        if waitingToWrite {
            guard let flushed = flush(connection) else { return }
            progress = flushed
        }
        if hangUp && connection.hostEndOfFile && !connection.hostHungUp {
            // The client that had half-closed is gone now.
            connection.hostHungUp = true
            armTimer(connection, after: tuning.closeGraceNanoseconds)
        }
        if revents & VsockDevice.pollIn != 0 || hangUp, connection.wantsRead {
            connection.inDataQueue = true
            dataQueue.append(id)
        } else if hangUp, waitingToWrite, watched & VsockDevice.pollIn == 0, progress == 0 {
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

    /// The host client will send nothing more: tell the guest (SHUTDOWN, send bit). A client
    /// that only half-closed still gets the guest's data for as long as the guest sends; one
    /// that closed entirely waits for the guest's reply (its SHUTDOWN or RST), bounded by
    /// the close grace, then RST.
    func hostReachedEndOfFile(_ connection: VsockConnection) {
        guard !connection.hostEndOfFile else { return }
        connection.hostEndOfFile = true
        connection.lastActivity = VsockDevice.now()
        if VsockUnixSocket.isHungUp(connection.fd) {
            connection.hostHungUp = true
            armTimer(connection, after: tuning.closeGraceNanoseconds)
        }
        if connection.guestShutdown & VsockShutdown.send == 0 {
            queueControl(connection, .shutdown, shutdownFlags: VsockShutdown.send)
        }
        settle(connection)
    }

    // MARK: Timers

    /// Makes sure `timerFired` runs for the connection within `nanoseconds`. Timers are not
    /// cancelled: a check that comes early or twice re-evaluates and re-arms as needed.
    func armTimer(_ connection: VsockConnection, after nanoseconds: UInt64) {
        let now = VsockDevice.now()
        let deadline = now + nanoseconds
        if let pending = connection.timerDeadline, pending > now, pending <= deadline { return }
        connection.timerDeadline = deadline
        let id = connection.id
        schedule(after: nanoseconds) { $0.timerFired(connectionID: id) }
    }

    /// Gives up on a REQUEST the guest never answered, and on closing connections the guest
    /// (or a host client that stopped reading) left idle for the grace period.
    func timerFired(connectionID: UInt64) {
        guard let connection = connectionsByID[connectionID] else { return }
        // Forget the pending deadline even if this is an early or stale check: the worst case is
        // one more harmless check, never a missing one.
        connection.timerDeadline = nil
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
