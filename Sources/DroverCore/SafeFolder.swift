import CDroverSystem
import Glibc

/// Files beneath one root folder (a state folder or a `drover run` results folder), reached
/// only through a descriptor of that root. No operation leaves the root or follows a
/// symbolic link anywhere below it, whatever the folder holds: a task folder or a task.json
/// planted as a link, or a task id of `../../x`, gets an error, never the link's target.
///
/// Paths are relative and "/"-separated, without `..`, `.`, empty parts or NUL; "." alone is
/// the root itself. Errors are `FileError`s naming the full path.
///
/// An instance holds nothing but a descriptor it never changes, so any thread may use it
/// (the writer thread included).
public final class SafeFolder: Sendable {
    public enum Kind: Sendable, Equatable {
        case file, folder, symlink, other
    }

    public struct Entry: Sendable, Equatable {
        public let name: String
        public let kind: Kind
    }

    /// What lstat says of an entry (fstat for the root).
    public struct Status: Sendable, Equatable {
        public let kind: Kind
        public let owner: uid_t
        /// Permission bits only (0o7777).
        public let mode: mode_t
        public let size: Int
    }

    /// How paths are resolved: by the kernel (openat2), or component by component where the
    /// kernel has no openat2. Tests choose the walk to cover it on any kernel.
    enum Resolver: Sendable {
        case kernel, walk
    }

    /// The root's absolute path, for messages.
    public let path: String
    private let root: Int32
    private let resolver: Resolver

    /// Opens the root (O_PATH, close-on-exec). The root may not be a symbolic link itself;
    /// folders above it may. With `create`, the root and its missing parents are made (0700).
    public convenience init(root: String, create: Bool = false) throws(FileError) {
        try self.init(root: root, create: create, resolver: .kernel)
    }

    init(root: String, create: Bool, resolver: Resolver) throws(FileError) {
        var path = FileSystem.absolute(root)
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        if create { try FileSystem.makeDirectories(path) }
        let fd = open(path, drover_o_path | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            var info = stat()
            let isLink = code == ENOTDIR && lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFLNK
            throw FileError(path: path, operation: "open folder", code: isLink ? ELOOP : code)
        }
        self.path = path
        self.root = fd
        self.resolver = resolver
    }

    deinit { close(root) }

    public func fullPath(_ relative: String) -> String {
        relative == "." ? path : path + "/" + relative
    }

    // MARK: files

    /// The whole content of a regular file.
    public func read(_ relative: String) throws(FileError) -> [UInt8] {
        let fd = try openFile(relative, O_RDONLY)
        defer { close(fd) }
        let size = try requireRegularFile(fd, relative).size
        var out: [UInt8] = []
        out.reserveCapacity(size)
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError(path: fullPath(relative), operation: "read", code: errno)
            }
            if n == 0 { return out }
            out.append(contentsOf: chunk[0..<n])
        }
    }

    /// Creates or truncates a file (0600) and writes `bytes`; with `sync`, fdatasync.
    public func write(_ relative: String, _ bytes: [UInt8], sync: Bool = false) throws(FileError) {
        let fd = try openFile(relative, O_WRONLY | O_CREAT | O_TRUNC)
        defer { close(fd) }
        _ = try requireRegularFile(fd, relative)
        try FileSystem.writeAll(fd, bytes, path: fullPath(relative))
        if sync && fdatasync(fd) != 0 { throw FileError(path: fullPath(relative), operation: "sync", code: errno) }
    }

    /// Opens a regular file for appending (created 0600), for a writer that keeps it open
    /// and syncs it itself. The caller closes it.
    public func openForAppending(_ relative: String) throws(FileError) -> Int32 {
        let fd = try openFile(relative, O_WRONLY | O_CREAT | O_APPEND)
        do {
            _ = try requireRegularFile(fd, relative)
        } catch {
            close(fd)
            throw error
        }
        return fd
    }

    /// Appends all of `bytes` or nothing: after a failed write (a full disk) the file is cut
    /// back to its old end, so a JSON-lines file never ends in half a line.
    public func append(_ relative: String, _ bytes: [UInt8]) throws(FileError) {
        let fd = try openFile(relative, O_WRONLY | O_CREAT | O_APPEND)
        defer { close(fd) }
        let oldSize = try requireRegularFile(fd, relative).size
        do {
            try FileSystem.writeAll(fd, bytes, path: fullPath(relative))
        } catch {
            _ = ftruncate(fd, off_t(oldSize))
            throw error
        }
    }

    /// Replaces a file atomically: writes NAME.tmp beside it, fdatasync (with `sync`), then
    /// renames it over NAME through the folder's descriptor. On any failure the old file
    /// stays and no NAME.tmp is left.
    public func replace(_ relative: String, _ bytes: [UInt8], sync: Bool = true) throws(FileError) {
        try inParent(of: relative) { (parent, name) throws(FileError) in
            let temporary = name + ".tmp"
            do throws(FileError) {
                let fd = openat(parent, temporary, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0o600)
                guard fd >= 0 else { throw FileError(path: fullPath(relative) + ".tmp", operation: "create", code: errno) }
                defer { close(fd) }
                try FileSystem.writeAll(fd, bytes, path: fullPath(relative) + ".tmp")
                if sync && fdatasync(fd) != 0 { throw FileError(path: fullPath(relative) + ".tmp", operation: "sync", code: errno) }
                if renameat(parent, temporary, parent, name) != 0 {
                    throw FileError(path: fullPath(relative), operation: "rename into", code: errno)
                }
            } catch {
                unlinkat(parent, temporary, 0)
                throw error
            }
        }
    }

    /// Renames within the root (the writer's own temporary files, made durable in a batch).
    /// A link at `to` is replaced, not followed.
    public func rename(_ relative: String, to destination: String) throws(FileError) {
        try inParent(of: relative) { (fromParent, fromName) throws(FileError) in
            try inParent(of: destination) { (toParent, toName) throws(FileError) in
                if renameat(fromParent, fromName, toParent, toName) != 0 {
                    throw FileError(path: fullPath(destination), operation: "rename \(relative) to", code: errno)
                }
            }
        }
    }

    /// Removes a file (a link itself, never its target).
    public func removeFile(_ relative: String) throws(FileError) {
        try inParent(of: relative) { (parent, name) throws(FileError) in
            if unlinkat(parent, name, 0) != 0 { throw FileError(path: fullPath(relative), operation: "remove", code: errno) }
        }
    }

    // MARK: folders

    /// mkdir -p (0700) below the root. An existing folder is fine; an existing link is not.
    public func makeFolder(_ relative: String) throws(FileError) {
        try makeFolder(try components(relative)[...], relative)
    }

    /// A folder's entries, without "." and "..", with their kind as lstat sees it (so a
    /// caller can skip links).
    public func list(_ relative: String) throws(FileError) -> [Entry] {
        let fd = try openFolder(try components(relative)[...], relative, flags: O_RDONLY)
        return try entries(ofOpenFolder: fd, relative)
    }

    /// Removes a file or a whole tree, like `rm -rf`: links are removed, never followed, and
    /// a missing entry is no error.
    public func removeTree(_ relative: String) throws(FileError) {
        try inParent(of: relative) { (parent, name) throws(FileError) in try removeEntry(name, in: parent, relative) }
    }

    /// Owner, mode, kind and size of an entry, not following a link; "." is the root, seen
    /// through its own descriptor.
    public func status(_ relative: String) throws(FileError) -> Status {
        var info = stat()
        if try components(relative).isEmpty {
            guard fstat(root, &info) == 0 else { throw FileError(path: path, operation: "inspect", code: errno) }
        } else {
            try inParent(of: relative) { (parent, name) throws(FileError) in
                if fstatat(parent, name, &info, AT_SYMLINK_NOFOLLOW) != 0 {
                    throw FileError(path: fullPath(relative), operation: "inspect", code: errno)
                }
            }
        }
        return Status(info)
    }

    /// syncfs(2) on the root's filesystem (one sync for a batch of writes).
    public func syncFileSystem() throws(FileError) {
        let fd = openat(root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw FileError(path: path, operation: "open folder", code: errno) }
        defer { close(fd) }
        if drover_syncfs(fd) != 0 { throw FileError(path: path, operation: "sync", code: errno) }
    }

    // MARK: resolution

    /// The parts of a relative path; none for ".". Anything that could leave the root or be
    /// read two ways (absolute, `..`, `.`, an empty part, NUL) is refused.
    private func components(_ relative: String) throws(FileError) -> [Substring] {
        if relative == "." { return [] }
        let parts = relative.split(separator: "/", omittingEmptySubsequences: false)
        guard !relative.contains("\0"), parts.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }) else {
            throw FileError(path: fullPath(relative), operation: "accept (relative paths only, without '..', '.', empty parts or NUL)", code: EINVAL)
        }
        return parts
    }

    /// Runs `body` with a descriptor of the folder holding `relative`'s last part, and that part.
    private func inParent<T>(of relative: String, _ body: (Int32, String) throws(FileError) -> T) throws(FileError) -> T {
        let parts = try components(relative)
        guard let name = parts.last else { throw FileError(path: path, operation: "use the root as a file:", code: EINVAL) }
        let parent = try openFolder(parts.dropLast(), relative)
        defer { close(parent) }
        return try body(parent, String(name))
    }

    /// A descriptor of the folder `parts` lead to (the root for none), opened with `flags`
    /// (O_PATH, or O_RDONLY to list it). The caller closes it.
    private func openFolder(_ parts: ArraySlice<Substring>, _ relative: String, flags: Int32 = drover_o_path) throws(FileError) -> Int32 {
        let folderFlags = flags | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
        if parts.isEmpty {
            let fd = openat(root, ".", folderFlags)
            guard fd >= 0 else { throw FileError(path: fullPath(relative), operation: "open folder", code: errno) }
            return fd
        }
        if resolver == .kernel {
            let fd = drover_open_beneath(root, parts.joined(separator: "/"), folderFlags, 0)
            if fd >= 0 { return fd }
            // The kernel answers ENOTDIR for a link where a folder should be: the walk below
            // tells that apart (ELOOP).
            if !Self.lacksOpenat2(errno) && errno != ENOTDIR {
                throw FileError(path: fullPath(relative), operation: "open folder", code: errno)
            }
        }
        var current = root
        for (position, part) in parts.enumerated() {
            let isLast = position == parts.count - 1
            let next = openat(current, String(part), isLast ? folderFlags : drover_o_path | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            let code = errno
            let failedOnLink = next < 0 && code == ENOTDIR && Self.isLink(String(part), in: current)
            if current != root { close(current) }
            guard next >= 0 else { throw FileError(path: fullPath(relative), operation: "open folder", code: failedOnLink ? ELOOP : code) }
            current = next
        }
        return current
    }

    /// Opens a file with `flags` (plus O_NOFOLLOW, O_NONBLOCK so that a planted FIFO cannot
    /// block, O_CLOEXEC); created 0600. The caller closes it.
    private func openFile(_ relative: String, _ flags: Int32) throws(FileError) -> Int32 {
        let parts = try components(relative)
        let fileFlags = flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC
        if resolver == .kernel && !parts.isEmpty {
            // One call resolves the folders and the file (the common case, so no extra descriptor).
            let fd = drover_open_beneath(root, relative, fileFlags, 0o600)
            if fd >= 0 { return fd }
            if !Self.lacksOpenat2(errno) { throw FileError(path: fullPath(relative), operation: "open", code: errno) }
        }
        return try inParent(of: relative) { (parent, name) throws(FileError) in
            let fd = openat(parent, name, fileFlags, 0o600)
            guard fd >= 0 else { throw FileError(path: fullPath(relative), operation: "open", code: errno) }
            return fd
        }
    }

    /// openat2 is missing (ENOSYS), or refused outright by an older container's seccomp
    /// profile (EPERM): the walk does the same job.
    private static func lacksOpenat2(_ code: Int32) -> Bool { code == ENOSYS || code == EPERM }

    private static func isLink(_ name: String, in folder: Int32) -> Bool {
        var info = stat()
        return fstatat(folder, name, &info, AT_SYMLINK_NOFOLLOW) == 0 && (info.st_mode & S_IFMT) == S_IFLNK
    }

    /// The file's status, if it is a regular file (not a folder, FIFO or device).
    private func requireRegularFile(_ fd: Int32, _ relative: String) throws(FileError) -> Status {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw FileError(path: fullPath(relative), operation: "inspect", code: errno) }
        let status = Status(info)
        guard status.kind == .file else {
            throw FileError(path: fullPath(relative), operation: "use a non-regular file", code: status.kind == .folder ? EISDIR : EINVAL)
        }
        return status
    }

    private func makeFolder(_ parts: ArraySlice<Substring>, _ relative: String) throws(FileError) {
        guard let name = parts.last.map(String.init) else { return }  // the root exists
        // Usually only the last part is new (a task's folder): try that first.
        var parent: Int32
        do {
            parent = try openFolder(parts.dropLast(), relative)
        } catch {
            guard error.code == ENOENT else { throw error }
            try makeFolder(parts.dropLast(), relative)
            parent = try openFolder(parts.dropLast(), relative)
        }
        defer { close(parent) }
        if mkdirat(parent, name, 0o700) == 0 { return }
        let code = errno
        var info = stat()
        guard code == EEXIST, fstatat(parent, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else {
            throw FileError(path: fullPath(relative), operation: "create folder", code: code)
        }
        switch Status(info).kind {
        case .folder: return
        case .symlink: throw FileError(path: fullPath(relative), operation: "create folder", code: ELOOP)
        case .file, .other: throw FileError(path: fullPath(relative), operation: "create folder", code: EEXIST)
        }
    }

    /// Reads the entries of an open folder descriptor, which it takes over (and closes).
    private func entries(ofOpenFolder fd: Int32, _ relative: String) throws(FileError) -> [Entry] {
        guard let folder = fdopendir(fd) else {
            let code = errno
            close(fd)
            throw FileError(path: fullPath(relative), operation: "list", code: code)
        }
        defer { closedir(folder) }
        var result: [Entry] = []
        while true {
            errno = 0
            guard let entry = readdir(folder) else {
                if errno != 0 { throw FileError(path: fullPath(relative), operation: "list", code: errno) }
                return result
            }
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name == "." || name == ".." { continue }
            var kind: Kind
            switch Int(entry.pointee.d_type) {
            case Int(DT_REG): kind = .file
            case Int(DT_DIR): kind = .folder
            case Int(DT_LNK): kind = .symlink
            case Int(DT_UNKNOWN):
                // Some filesystems do not fill d_type: ask lstat.
                var info = stat()
                kind = fstatat(dirfd(folder), name, &info, AT_SYMLINK_NOFOLLOW) == 0 ? Status(info).kind : .other
            default: kind = .other
            }
            result.append(Entry(name: name, kind: kind))
        }
    }

    private func removeEntry(_ name: String, in parent: Int32, _ relative: String) throws(FileError) {
        // unlink removes files and links; Linux answers EISDIR for a folder.
        if unlinkat(parent, name, 0) == 0 { return }
        let code = errno
        if code == ENOENT { return }
        guard code == EISDIR else { throw FileError(path: fullPath(relative), operation: "remove", code: code) }
        let fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw FileError(path: fullPath(relative), operation: "open folder", code: errno) }
        let folder = fcntl(fd, F_DUPFD_CLOEXEC, 0)  // kept for unlinkat; `entries` closes `fd`
        guard folder >= 0 else {
            close(fd)
            throw FileError(path: fullPath(relative), operation: "open folder", code: errno)
        }
        defer { close(folder) }
        for entry in try entries(ofOpenFolder: fd, relative) {
            try removeEntry(entry.name, in: folder, relative + "/" + entry.name)
        }
        if unlinkat(parent, name, AT_REMOVEDIR) != 0 && errno != ENOENT {
            throw FileError(path: fullPath(relative), operation: "remove folder", code: errno)
        }
    }
}

extension SafeFolder.Status {
    init(_ info: stat) {
        switch info.st_mode & S_IFMT {
        case S_IFREG: kind = .file
        case S_IFDIR: kind = .folder
        case S_IFLNK: kind = .symlink
        default: kind = .other
        }
        owner = info.st_uid
        mode = info.st_mode & 0o7777
        size = Int(info.st_size)
    }
}
