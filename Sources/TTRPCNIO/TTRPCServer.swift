import AgentProtocol
import NIOCore
import NIOPosix

/// A ttrpc server over Unix stream sockets, on SwiftNIO: many connections, concurrent
/// requests on each, the 4 MiB frame limit, proper error statuses.
public final class TTRPCUnixServer: Sendable {
    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel

    /// Binds `path` (an existing socket file is replaced) and serves `service`.
    public static func bind(path: String, service: any TTRPCService, log: @escaping @Sendable (String) -> Void) async throws -> TTRPCUnixServer {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            let channel = try await bootstrap(group: group, service: service, log: log)
                .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
            return TTRPCUnixServer(group: group, channel: channel)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    /// Serves on a socket that is already bound and listening (the shim's fd 3, handed
    /// over by the `start` command that containerd ran).
    public static func adopt(listeningDescriptor: Int32, service: any TTRPCService,
                             log: @escaping @Sendable (String) -> Void) async throws -> TTRPCUnixServer {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            let channel = try await bootstrap(group: group, service: service, log: log)
                .withBoundSocket(listeningDescriptor).get()
            return TTRPCUnixServer(group: group, channel: channel)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    private static func bootstrap(group: MultiThreadedEventLoopGroup, service: any TTRPCService,
                                  log: @escaping @Sendable (String) -> Void) -> ServerBootstrap {
        ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 64)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(TTRPCChannelHandler(service: service, log: log))
                }
            }
    }

    private init(group: MultiThreadedEventLoopGroup, channel: any Channel) {
        self.group = group
        self.channel = channel
    }

    /// Waits until the server is closed.
    public func run() async throws {
        try await channel.closeFuture.get()
    }

    public func close() async {
        try? await channel.close()
        try? await group.shutdownGracefully()
    }
}
