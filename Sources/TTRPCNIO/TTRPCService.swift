import AgentProtocol

/// What a ttrpc server serves: one request in, one response out. Calls run concurrently
/// (containerd's `ctr run` sends Wait and blocks on it before it sends Start), so an
/// implementation must not assume one call at a time.
public protocol TTRPCService: Sendable {
    func handle(_ request: TTRPCRequest) async -> TTRPCResponse
}
