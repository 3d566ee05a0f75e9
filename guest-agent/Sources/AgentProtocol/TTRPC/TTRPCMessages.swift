import SwiftProtobuf

// Conveniences over the generated envelope messages of ttrpc.proto.

extension TTRPCStatus {
    public init(code: TTRPCStatusCode, message: String = "") {
        self.init()
        self.code = code.rawValue
        self.message = message
    }

    /// `code` as a TTRPCStatusCode (unknown wire values read as `.unknown`).
    public var statusCode: TTRPCStatusCode { TTRPCStatusCode(code: code) }
}

extension TTRPCRequest {
    /// A call of `method` on `service` (the full protobuf service name).
    public init<M: SwiftProtobuf.Message>(
        service: String, method: String, message: M,
        timeoutNanoseconds: Int64 = 0, metadata: [(key: String, value: String)] = []
    ) throws {
        self.init()
        self.service = service
        self.method = method
        self.payload = try message.serializedBytes()
        self.timeoutNano = timeoutNanoseconds
        self.metadata = metadata.map { pair in
            var keyValue = TTRPCKeyValue()
            keyValue.key = pair.key
            keyValue.value = pair.value
            return keyValue
        }
    }
}

extension TTRPCResponse {
    /// A successful answer carrying `message`.
    public init<M: SwiftProtobuf.Message>(message: M) throws {
        self.init()
        self.status = TTRPCStatus(code: .ok)
        self.payload = try message.serializedBytes()
    }

    /// A failed answer.
    public init(code: TTRPCStatusCode, message: String) {
        self.init()
        self.status = TTRPCStatus(code: code, message: message)
    }
}

extension TTRPCFrame {
    /// A request frame carrying `request` (sent with no flags, as containerd's client does).
    public init(streamID: UInt32, request: TTRPCRequest) throws {
        self.init(streamID: streamID, type: .request, payload: try request.serializedBytes())
    }

    /// A response frame carrying `response`.
    public init(streamID: UInt32, response: TTRPCResponse) throws {
        self.init(streamID: streamID, type: .response, payload: try response.serializedBytes())
    }
}
