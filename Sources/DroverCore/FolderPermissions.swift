import Glibc

/// A folder drover refuses to use: another user could plant tasks in it, which drover would
/// run as its own user (SPEC section 16, promise 4).
public struct FolderPermissionError: Error, Sendable, CustomStringConvertible {
    public enum Problem: Sendable, Equatable {
        case symlink
        case notAFolder
        case ownedByAnotherUser
        case writableByOthers
        /// lstat/fstat failed with this errno.
        case cannotInspect(Int32)
    }

    public let path: String
    public let problem: Problem
    /// Owner and permission bits; nil when the folder could not be inspected.
    public let owner: uid_t?
    public let mode: mode_t?

    public var description: String {
        guard let owner, let mode else {
            return "drover cannot check the folder \(path): \(reason). Fix: make it readable by \(FolderPermissions.userName(geteuid()))."
        }
        return "drover refuses the folder \(path), owned by \(FolderPermissions.userName(owner)) with mode \(octal(mode)): \(reason). Fix: \(fix)."
    }

    private var reason: String {
        switch problem {
        case .symlink: "it is a symbolic link, and drover follows none in its folders"
        case .notAFolder: "it is not a folder"
        case .ownedByAnotherUser: "it is not owned by \(FolderPermissions.userName(geteuid())), who runs drover, so its owner could plant tasks in it"
        case .writableByOthers: "\(writers) can write to it, so they could plant tasks in it"
        case .cannotInspect(let code): String(cString: strerror(code))
        }
    }

    private var writers: String {
        switch (mode ?? 0) & 0o022 {
        case 0o020: "its group"
        case 0o002: "all users"
        default: "its group and all users"
        }
    }

    private var fix: String {
        let quoted = shellQuoted(path)
        return switch problem {
        case .symlink: "replace the link with a real folder: rm \(quoted) && mkdir -m 700 \(quoted)"
        case .notAFolder: "move it out of the way (drover makes the folder itself)"
        case .ownedByAnotherUser: "chown -R \(FolderPermissions.userName(geteuid(), withUID: false)) \(quoted) as root, or use a folder of your own"
        case .writableByOthers: "chmod 700 \(quoted)"
        case .cannotInspect: "check its permissions"
        }
    }
}

/// The check run before a supervisor starts (its caller exits 2 on failure), as ssh refuses
/// a loose ~/.ssh: a state or results folder, and its tasks/ and sessions/ where they exist,
/// must be real folders (not links), owned by the effective uid and not writable by group or
/// others.
public enum FolderPermissions {
    public static let subfolders = ["tasks", "sessions"]

    /// Checks a folder by path. A folder that does not exist yet passes (drover makes it,
    /// private); a link in its place is refused.
    public static func check(path: String) throws(FolderPermissionError) {
        let path = FileSystem.absolute(path)
        var info = stat()
        if lstat(path, &info) != 0 {
            if errno == ENOENT { return }
            throw FolderPermissionError(path: path, problem: .cannotInspect(errno), owner: nil, mode: nil)
        }
        try judge(path, SafeFolder.Status(info))
        let folder: SafeFolder
        do { folder = try SafeFolder(root: path) } catch {
            throw FolderPermissionError(path: path, problem: .cannotInspect(error.code), owner: nil, mode: nil)
        }
        try check(folder)
    }

    /// Checks an open folder through its descriptor, so what is checked is what drover then
    /// uses, even if the path is swapped afterwards.
    public static func check(_ folder: SafeFolder) throws(FolderPermissionError) {
        for name in ["."] + subfolders {
            let status: SafeFolder.Status
            do { status = try folder.status(name) } catch {
                if error.code == ENOENT && name != "." { continue }
                throw FolderPermissionError(path: folder.fullPath(name), problem: .cannotInspect(error.code), owner: nil, mode: nil)
            }
            try judge(folder.fullPath(name), status)
        }
    }

    private static func judge(_ path: String, _ status: SafeFolder.Status) throws(FolderPermissionError) {
        let problem: FolderPermissionError.Problem? =
            switch status.kind {
            case .symlink: .symlink
            case .file, .other: .notAFolder
            case .folder where status.owner != geteuid(): .ownedByAnotherUser
            case .folder where status.mode & 0o022 != 0: .writableByOthers
            case .folder: nil
            }
        if let problem { throw FolderPermissionError(path: path, problem: problem, owner: status.owner, mode: status.mode) }
    }

    /// "alice (uid 1000)", or "uid 1000" for a uid without a name; the bare name (else the
    /// number) without `withUID`.
    public static func userName(_ uid: uid_t, withUID: Bool = true) -> String {
        var entry = passwd()
        var found: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 1024)
        while true {
            let code = getpwuid_r(uid, &entry, &buffer, buffer.count, &found)
            if code == ERANGE && buffer.count < 1 << 20 {
                buffer = [CChar](repeating: 0, count: buffer.count * 4)
                continue
            }
            guard code == 0, found != nil, let name = entry.pw_name else { return withUID ? "uid \(uid)" : "\(uid)" }
            return withUID ? "\(String(cString: name)) (uid \(uid))" : String(cString: name)
        }
    }
}

private func octal(_ mode: mode_t) -> String {
    let digits = String(mode, radix: 8)
    return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
}
