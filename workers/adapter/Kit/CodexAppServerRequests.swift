import DroverWire

/// The JSON-RPC messages the adapter sends to Codex's app-server (its v2 protocol, as the
/// IDE integrations use it): a handshake, a thread started or resumed, a turn per prompt,
/// an interrupt. Each is one JSON object on one line; the server answers a request by its
/// `id`.
enum CodexAppServerRequests {
    static func initialize(id: Int) -> JSONObject {
        request(id, "initialize", ["clientInfo": ["name": "drover", "title": "drover", "version": "1"], "capabilities": [:]])
    }

    /// Sent once `initialize` is answered: the server takes no other request before it.
    static let initialized: JSONObject = ["method": "initialized"]

    /// A new thread, or (with `resume`) the thread of an earlier task, which the server reads
    /// back from its own session files. Without `approvalPolicy` Codex's config decides.
    static func openThread(id: Int, resume: String?, cwd: String?, model: String?, sandbox: CodexSandbox, approvalPolicy: CodexApprovalPolicy?) -> JSONObject {
        var params: JSONObject = ["sandbox": .string(sandbox.rawValue)]
        if let approvalPolicy { params["approvalPolicy"] = .string(approvalPolicy.rawValue) }
        if let resume {
            params["threadId"] = .string(resume)
            // The adapter needs the thread, not its history in the answer.
            params["excludeTurns"] = true
        }
        if let cwd { params["cwd"] = .string(cwd) }
        if let model { params["model"] = .string(model) }
        return request(id, resume == nil ? "thread/start" : "thread/resume", params)
    }

    static func startTurn(id: Int, thread: String, prompt: String) -> JSONObject {
        request(id, "turn/start", ["threadId": .string(thread), "input": [["type": "text", "text": .string(prompt)]]])
    }

    static func interrupt(id: Int, thread: String, turn: String) -> JSONObject {
        request(id, "turn/interrupt", ["threadId": .string(thread), "turnId": .string(turn)])
    }

    /// A message as the server reads it: one line.
    static func line(_ message: JSONObject) -> [UInt8] {
        JSONWriter.bytes(.object(message)) + [0x0A]
    }

    private static func request(_ id: Int, _ method: String, _ params: JSONObject) -> JSONObject {
        ["id": JSONValue(id), "method": .string(method), "params": .object(params)]
    }
}
