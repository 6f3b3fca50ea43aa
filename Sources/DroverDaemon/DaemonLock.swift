import DroverCore
import Glibc

/// One daemon per state folder: an exclusive flock on `daemon.lock`, which holds its pid.
/// The kernel drops the lock when the process dies, however it dies.
struct DaemonLock {
    let fd: Int32

    enum Failure: Error, CustomStringConvertible {
        case heldBy(pid: String, folder: String)
        case cannotOpen(FileError)

        var description: String {
            switch self {
            case .heldBy(let pid, let folder): "a drover daemon (pid \(pid)) already serves \(folder)"
            case .cannotOpen(let error): error.description
            }
        }
    }

    static func acquire(_ state: StateFolder) throws(Failure) -> DaemonLock {
        let fd = open(state.lock, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .cannotOpen(FileError(path: state.lock, operation: "open", code: errno)) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let holder = (try? FileSystem.read(state.lock)).map { String(decoding: $0, as: UTF8.self) } ?? "?"
            close(fd)
            throw .heldBy(pid: holder.split(separator: "\n").first.map(String.init) ?? "?", folder: state.path)
        }
        ftruncate(fd, 0)
        let text = Array("\(getpid())\n".utf8)
        _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        return DaemonLock(fd: fd)
    }

    /// Whether some daemon holds the lock now (used by clients to tell a stale socket).
    static func isHeld(_ state: StateFolder) -> Bool {
        let fd = open(state.lock, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return false
        }
        return true
    }

    func release(_ state: StateFolder) {
        unlink(state.lock)
        close(fd)
    }
}
