import Glibc

/// A failed file operation: the path, what was being done, and errno.
public struct FileError: Error, Sendable, CustomStringConvertible {
    public let path: String
    public let operation: String
    public let code: Int32
    public var description: String { "cannot \(operation) \(path): \(String(cString: strerror(code)))" }

    public init(path: String, operation: String, code: Int32) {
        self.path = path
        self.operation = operation
        self.code = code
    }
}

/// Small synchronous file helpers (no Foundation, so the command starts fast).
public enum FileSystem {
    public static func read(_ path: String) throws(FileError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileError(path: path, operation: "open", code: errno) }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError(path: path, operation: "read", code: errno)
            }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
        }
        return out
    }

    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    public static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    public static func isExecutableFile(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG && access(path, X_OK) == 0
    }

    /// mkdir -p with the given mode for every folder it creates.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o700) throws(FileError) {
        // The folder itself first: usually only its last component is new (a task's
        // folder), and one mkdir beats a walk from the root.
        if mkdir(path, mode) == 0 { return }
        if errno == EEXIST {
            if isDirectory(path) { return }
            throw FileError(path: path, operation: "create folder", code: EEXIST)
        }
        guard errno == ENOENT else { throw FileError(path: path, operation: "create folder", code: errno) }
        let parent = dirname(of: path)
        guard parent != path, !parent.isEmpty else { throw FileError(path: path, operation: "create folder", code: ENOENT) }
        try makeDirectories(parent, mode: mode)
        if mkdir(path, mode) != 0 && !(errno == EEXIST && isDirectory(path)) {
            throw FileError(path: path, operation: "create folder", code: errno)
        }
    }

    /// Writes a whole file: write to a temporary name, fsync, rename over the target.
    public static func writeAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o600, sync: Bool = true) throws(FileError) {
        let temporary = path + ".tmp"
        do throws(FileError) {
            try writeFile(temporary, bytes, mode: mode, sync: sync)
            if rename(temporary, path) != 0 { throw FileError(path: path, operation: "rename into", code: errno) }
        } catch {
            unlink(temporary)
            throw error
        }
    }

    public static func writeFile(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o600, sync: Bool = false) throws(FileError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw FileError(path: path, operation: "create", code: errno) }
        defer { close(fd) }
        try writeAll(fd, bytes, path: path)
        if sync && fdatasync(fd) != 0 { throw FileError(path: path, operation: "sync", code: errno) }
    }

    /// Appends all of `bytes` or nothing: after a failed write (a full disk) the file is cut
    /// back to its old end, so a JSON-lines file never ends in half a line.
    public static func append(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o600) throws(FileError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, mode)
        guard fd >= 0 else { throw FileError(path: path, operation: "open", code: errno) }
        defer { close(fd) }
        try appendAll(fd, bytes, path: path)
    }

    /// The same on a descriptor opened with O_APPEND.
    public static func appendAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws(FileError) {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw FileError(path: path, operation: "inspect", code: errno) }
        do {
            try writeAll(fd, bytes, path: path)
        } catch {
            _ = ftruncate(fd, info.st_size)
            throw error
        }
    }

    /// Failures that may pass once there is room again (worth trying the write later).
    public static func isLackOfSpace(_ error: FileError) -> Bool {
        error.code == ENOSPC || error.code == EDQUOT
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws(FileError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError(path: path, operation: "write", code: errno)
            }
            offset += n
        }
    }

    /// Names in a folder, without "." and "..".
    public static func list(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    public static func currentDirectory() -> String {
        guard let cwd = getcwd(nil, 0) else { return "." }
        defer { free(cwd) }
        return String(cString: cwd)
    }

    /// The folder holding the running executable (where sibling programs such as the mock
    /// agent are looked up first).
    public static func executableDirectory() -> String {
        dirname(of: executablePath())
    }

    /// The running executable's path.
    public static func executablePath() -> String {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { readlink("/proc/self/exe", $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count) }
        guard n > 0 else { return "drover" }
        return String(decoding: buffer[0..<n], as: UTF8.self)
    }

    public static func dirname(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    public static func basename(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    /// The path with every link resolved; nil when it does not exist.
    public static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// When the file was last written (unix ms); nil when it cannot be read.
    public static func modifiedMs(_ path: String) -> Int64? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return Int64(info.st_mtim.tv_sec) * 1000 + Int64(info.st_mtim.tv_nsec) / 1_000_000
    }

    public static func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : currentDirectory() + "/" + path
    }
}

/// The process environment as a dictionary.
public enum ProcessEnvironment {
    public static func current() -> [String: String] {
        var result: [String: String] = [:]
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if let eq = text.firstIndex(of: "=") {
                result[String(text[..<eq])] = String(text[text.index(after: eq)...])
            }
            pointer += 1
        }
        return result
    }
}
