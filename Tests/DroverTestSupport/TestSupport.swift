// Helpers shared by the test suites: temporary folders, reading drover's files, what /proc
// says about processes, and running the built `drover` executable.
import DroverCore
import DroverWire
import Glibc

public struct TestFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public func temporaryFolder() throws -> String {
    var template = Array("/tmp/drover-test-XXXXXX".utf8CString)
    let path = template.withUnsafeMutableBufferPointer { buffer -> String? in
        guard let made = mkdtemp(buffer.baseAddress!) else { return nil }
        return String(cString: made)
    }
    guard let path else { throw FileError(path: "/tmp", operation: "create a temporary folder in", code: errno) }
    return path
}

public func removeTree(_ path: String) {
    var info = stat()
    guard lstat(path, &info) == 0 else { return }
    if (info.st_mode & S_IFMT) == S_IFDIR {
        for name in FileSystem.list(path) { removeTree(path + "/" + name) }
        rmdir(path)
    } else {
        unlink(path)
    }
}

public func readText(_ path: String) -> String {
    String(decoding: (try? FileSystem.read(path)) ?? [], as: UTF8.self)
}

public func readJSON(_ path: String) throws -> JSONObject {
    guard let object = try JSONParser.parse(try FileSystem.read(path)).value.objectValue else { throw TestFailure("\(path) is not a JSON object") }
    return object
}

public func readLines(_ path: String) throws -> [JSONObject] {
    try FileSystem.read(path).split(separator: 0x0A).map { line in
        guard let object = try JSONParser.parse(line).value.objectValue else { throw TestFailure("a line of \(path) is not an object") }
        return object
    }
}

public func parseObject(_ text: String) throws -> JSONObject {
    guard let object = try JSONParser.parse(text).value.objectValue else { throw TestFailure("not a JSON object: \(text)") }
    return object
}

/// Polls until `condition` holds or `ms` pass.
@discardableResult
public func eventually(withinMs ms: Int = 5000, _ condition: () -> Bool) -> Bool {
    var waited = 0
    while waited < ms {
        if condition() { return true }
        usleep(10_000)
        waited += 10
    }
    return condition()
}

/// What /proc says about processes: used to prove that nothing a task started survives.
public enum Processes {
    public struct Entry {
        public let pid: Int32
        public let state: Character
        public let pgrp: Int32
    }

    public static func entry(_ pid: Int32) -> Entry? {
        guard let bytes = try? FileSystem.read("/proc/\(pid)/stat") else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 3, let state = fields[0].first, let pgrp = Int32(fields[2]) else { return nil }
        return Entry(pid: pid, state: state, pgrp: pgrp)
    }

    /// Running, or a zombie nobody has reaped.
    public static func exists(_ pid: Int32) -> Bool { entry(pid) != nil }

    /// Running (a zombie is dead, if unreaped). A killed process whose main thread is already
    /// a zombie still runs while another of its threads finishes (one in fdatasync, say), and
    /// it holds its descriptors until then -- a daemon's listening socket among them, where a
    /// client's connection would be reset -- so every thread counts.
    public static func isAlive(_ pid: Int32) -> Bool {
        guard let entry = entry(pid) else { return false }
        if entry.state != "Z" && entry.state != "X" { return true }
        return FileSystem.list("/proc/\(pid)/task").contains { name in
            guard let tid = Int32(name), tid != pid, let bytes = try? FileSystem.read("/proc/\(pid)/task/\(tid)/stat") else { return false }
            let text = String(decoding: bytes, as: UTF8.self)
            guard let close = text.lastIndex(of: ")"), let state = text[text.index(after: close)...].split(separator: " ").first?.first else { return false }
            return state != "Z" && state != "X"
        }
    }

    /// Live members of a process group.
    public static func liveMembers(ofGroup pgid: Int32) -> [Int32] {
        FileSystem.list("/proc").compactMap { Int32($0) }.filter { pid in
            guard let entry = entry(pid) else { return false }
            return entry.pgrp == pgid && entry.state != "Z" && entry.state != "X"
        }
    }
}

/// A finished run of the `drover` executable.
public struct CommandResult {
    public let status: Int32
    public let stdout: String
    public let stderr: String
}

public var droverExecutable: String { FileSystem.executableDirectory() + "/drover" }

/// The folder another user runs the built programs from: a copy of drover and its companion
/// programs (found beside it) in a folder anyone can enter, made once per test process and
/// removed at its exit. The build folder may lie inside a private one (a checkout in a 0700
/// folder, as `mktemp -d` makes), which another user cannot reach.
public let programsForOtherUsers: String = {
    guard let folder = try? temporaryFolder() else { return FileSystem.executableDirectory() }
    chmod(folder, 0o755)
    let built = FileSystem.executableDirectory()
    for program in ["drover", "drover-mcp", "drover-warden", "drover-mock-agent", "drover-limits", "drover-adapter"] {
        guard let bytes = try? FileSystem.read(built + "/" + program) else { continue }
        try? FileSystem.writeFile(folder + "/" + program, bytes, mode: 0o755)
        chmod(folder + "/" + program, 0o755)  // whatever the umask
    }
    atexit { removeTree(programsForOtherUsers) }
    return folder
}()

/// Spawn attributes with an empty signal mask: a test runner's threads block signals, and a
/// child would inherit that.
func cleanSignalAttributes() -> posix_spawnattr_t {
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    var none = sigset_t()
    sigemptyset(&none)
    posix_spawnattr_setsigmask(&attributes, &none)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK))
    return attributes
}

/// Where a spawned child's stdout goes.
public enum ChildOutput {
    case file(String)
    case descriptor(Int32)
}

/// Starts `command` with a clean signal mask: stdin from `input` (or /dev/null), stdout to
/// `output`, stderr to a file, in `folder` if given (through env -C: glibc's addchdir_np is
/// not visible from Swift). Returns its pid.
public func spawnChild(_ command: [String], input: Int32? = nil, output: ChildOutput, stderr: String, in folder: String? = nil) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    if let input {
        posix_spawn_file_actions_adddup2(&actions, input, 0)
    } else {
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    }
    switch output {
    case .file(let path): posix_spawn_file_actions_addopen(&actions, 1, path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    case .descriptor(let fd): posix_spawn_file_actions_adddup2(&actions, fd, 1)
    }
    posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    let argv = ((folder.map { ["/usr/bin/env", "-C", $0] } ?? []) + command)
    let cArguments = argv.map { strdup($0) } + [nil]
    defer { cArguments.forEach { free($0) } }
    var attributes = cleanSignalAttributes()
    defer { posix_spawnattr_destroy(&attributes) }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, argv[0], &actions, &attributes, cArguments, environ)
    guard rc == 0 else { throw FileError(path: argv[0], operation: "run", code: rc) }
    return pid
}

/// Starts `command` with stdin from /dev/null and stdout and stderr to files, with a clean
/// signal mask; returns its pid.
func spawn(_ command: [String], stdout: String, stderr: String) throws -> pid_t {
    try spawnChild(command, output: .file(stdout), stderr: stderr)
}

/// Runs the built `drover` in `folder` with its output captured, as a user would.
/// `user` runs it as another user (through runuser; the tests run as root); `environment`
/// adds NAME=value entries.
public func runDrover(_ arguments: [String], in folder: String, user: String? = nil, environment: [String] = []) throws -> CommandResult {
    let out = folder + "/.out"
    let err = folder + "/.err"
    // env -C runs drover in the folder (glibc's addchdir_np is not visible from Swift).
    let executable = user == nil ? droverExecutable : programsForOtherUsers + "/drover"
    var command = ["/usr/bin/env", "-C", user == nil ? folder : "/"] + environment + [executable] + arguments
    if let user { command = ["/usr/sbin/runuser", "-u", user, "--"] + command }
    let status = waitForExit(try spawn(command, stdout: out, stderr: err))
    return CommandResult(status: status, stdout: readText(out), stderr: readText(err))
}

/// Starts the built `drover` in the background with output to a file; returns its pid.
/// `environment` adds NAME=value entries (through env, which execs drover in place).
public func startDrover(_ arguments: [String], output: String, environment: [String] = []) throws -> pid_t {
    let command = environment.isEmpty ? [droverExecutable] + arguments : ["/usr/bin/env"] + environment + [droverExecutable] + arguments
    return try spawn(command, stdout: output, stderr: output + ".err")
}

/// Waits for a child started with `startDrover`; returns its exit status.
public func waitForExit(_ pid: pid_t) -> Int32 {
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    return (status >> 8) & 0xFF
}
