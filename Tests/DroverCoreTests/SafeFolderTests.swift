@testable import DroverCore
import DroverTestSupport
import Glibc
import Testing

/// Each test runs with both resolvers: openat2, and the walk used where the kernel has none.
@Suite struct SafeFolderTests {
    static let resolvers: [SafeFolder.Resolver] = [.kernel, .walk]

    /// A temporary folder holding `root` (the SafeFolder's) and `outside` with a secret file.
    final class Scene {
        let base: String
        var root: String { base + "/root" }
        var outside: String { base + "/outside" }
        let secret = "not yours\n"

        init() throws {
            base = try temporaryFolder()
            try FileSystem.makeDirectories(root + "/tasks/bg_00000001")
            try FileSystem.makeDirectories(outside)
            try FileSystem.writeFile(outside + "/secret.txt", Array(secret.utf8))
        }

        deinit { removeTree(base) }

        func open(_ resolver: SafeFolder.Resolver) throws -> SafeFolder {
            try SafeFolder(root: root, create: false, resolver: resolver)
        }

        func link(_ relative: String, to target: String) throws {
            unlink(root + "/" + relative)
            try #require(symlink(target, root + "/" + relative) == 0, "symlink: errno \(errno)")
        }

        /// The outside folder is exactly as it was set up.
        func expectOutsideUntouched(sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(FileSystem.list(outside).sorted() == ["secret.txt"], sourceLocation: sourceLocation)
            #expect(readText(outside + "/secret.txt") == secret, sourceLocation: sourceLocation)
        }
    }

    @Test(arguments: resolvers) func aLinkedTaskFolderIsNeverFollowed(resolver: SafeFolder.Resolver) throws {
        let scene = try Scene()
        try scene.link("tasks/bg_00000002", to: scene.outside)
        let folder = try scene.open(resolver)
        let task = "tasks/bg_00000002"

        #expect(failure { _ = try folder.read(task + "/secret.txt") }?.code == ELOOP)
        #expect(failure { try folder.write(task + "/result.md", Array("x".utf8)) }?.code == ELOOP)
        #expect(failure { try folder.append(task + "/transcript.jsonl", Array("x\n".utf8)) }?.code == ELOOP)
        #expect(failure { try folder.replace(task + "/task.json", Array("{}".utf8)) }?.code == ELOOP)
        #expect(failure { try folder.makeFolder(task) }?.code == ELOOP)
        #expect(failure { try folder.makeFolder(task + "/deeper") }?.code == ELOOP)
        #expect(failure { _ = try folder.list(task) }?.code == ELOOP)
        #expect(failure { try folder.removeFile(task + "/secret.txt") }?.code == ELOOP)
        #expect(failure { try folder.rename(task + "/secret.txt", to: "stolen") }?.code == ELOOP)
        #expect(failure { try folder.rename("tasks/bg_00000001", to: task + "/planted") }?.code == ELOOP)
        scene.expectOutsideUntouched()

        // Listing shows the link as a link, so recovery can skip it.
        let entries = try folder.list("tasks").sorted { $0.name < $1.name }
        #expect(entries == [.init(name: "bg_00000001", kind: .folder), .init(name: "bg_00000002", kind: .symlink)])
        #expect(try folder.status(task).kind == .symlink)
        // Removing the tree removes the link, not what it points at.
        try folder.removeTree(task)
        #expect(try folder.list("tasks").map(\.name) == ["bg_00000001"])
        scene.expectOutsideUntouched()
    }

    @Test(arguments: resolvers) func linkedFilesAreNeverFollowed(resolver: SafeFolder.Resolver) throws {
        let scene = try Scene()
        try scene.link("tasks/bg_00000001/task.json", to: "/etc/passwd")
        try scene.link("tasks/bg_00000001/result.md", to: scene.outside + "/secret.txt")
        try scene.link("tasks/bg_00000001/stderr.log", to: scene.outside + "/new.log")  // dangling
        let folder = try scene.open(resolver)
        let task = "tasks/bg_00000001"

        #expect(failure { _ = try folder.read(task + "/task.json") }?.code == ELOOP)
        #expect(failure { _ = try folder.read(task + "/result.md") }?.code == ELOOP)
        #expect(failure { try folder.write(task + "/result.md", Array("overwritten".utf8)) }?.code == ELOOP)
        #expect(failure { try folder.append(task + "/result.md", Array("appended".utf8)) }?.code == ELOOP)
        #expect(failure { try folder.write(task + "/stderr.log", Array("created".utf8)) }?.code == ELOOP)
        #expect(failure { try folder.append(task + "/stderr.log", Array("created".utf8)) }?.code == ELOOP)
        scene.expectOutsideUntouched()

        // A replacement renames over the link itself: the file becomes ours, the target stays.
        try folder.replace(task + "/result.md", Array("ours".utf8))
        #expect(try folder.status(task + "/result.md").kind == .file)
        #expect(try folder.read(task + "/result.md") == Array("ours".utf8))
        try folder.removeFile(task + "/task.json")
        #expect(FileSystem.exists("/etc/passwd"))
        scene.expectOutsideUntouched()
    }

    @Test(arguments: resolvers) func aLinkedIntermediateFolderIsNeverFollowed(resolver: SafeFolder.Resolver) throws {
        let scene = try Scene()
        removeTree(scene.root + "/tasks")
        try scene.link("tasks", to: scene.outside)
        let folder = try scene.open(resolver)

        #expect(failure { _ = try folder.read("tasks/secret.txt") }?.code == ELOOP)
        #expect(failure { try folder.makeFolder("tasks/bg_00000003") }?.code == ELOOP)
        #expect(failure { try folder.write("tasks/bg_00000003/task.json", Array("{}".utf8)) } != nil)
        #expect(failure { try folder.replace("tasks/task.json", Array("{}".utf8)) }?.code == ELOOP)
        #expect(failure { try folder.append("tasks/events.jsonl", Array("{}\n".utf8)) }?.code == ELOOP)
        #expect(failure { try folder.removeTree("tasks/secret.txt") }?.code == ELOOP)
        #expect(failure { _ = try folder.list("tasks") }?.code == ELOOP)
        scene.expectOutsideUntouched()
    }

    @Test func aLinkedRootIsRefused() throws {
        let scene = try Scene()
        try #require(symlink(scene.outside, scene.base + "/linked") == 0)
        #expect(failure { _ = try SafeFolder(root: scene.base + "/linked") }?.code == ELOOP)
        // Links above the root are the user's business.
        try #require(symlink(scene.base, scene.base + "/above") == 0)
        #expect(try SafeFolder(root: scene.base + "/above/root").list("tasks").map(\.name) == ["bg_00000001"])
    }

    @Test(arguments: resolvers) func pathsThatCouldLeaveAreRefused(resolver: SafeFolder.Resolver) throws {
        let scene = try Scene()
        let folder = try scene.open(resolver)
        let bad = ["../x", "tasks/../../x", "tasks/../../x/task.json", "/etc/passwd", "", "tasks//x", "tasks/", "./tasks", "tasks/.", "tasks/x\0/../../y"]
        for path in bad {
            #expect(failure { _ = try folder.read(path) }?.code == EINVAL, "read \(path)")
            #expect(failure { try folder.write(path, [1]) }?.code == EINVAL, "write \(path)")
            #expect(failure { try folder.append(path, [1]) }?.code == EINVAL, "append \(path)")
            #expect(failure { try folder.replace(path, [1]) }?.code == EINVAL, "replace \(path)")
            #expect(failure { try folder.makeFolder(path) }?.code == EINVAL, "makeFolder \(path)")
            #expect(failure { try folder.removeTree(path) }?.code == EINVAL, "removeTree \(path)")
            #expect(failure { _ = try folder.status(path) }?.code == EINVAL, "status \(path)")
        }
        #expect(FileSystem.list(scene.base).sorted() == ["outside", "root"])
        #expect(failure { try folder.removeTree(".") }?.code == EINVAL)
        #expect(try folder.status(".").kind == .folder)
    }

    @Test(arguments: resolvers) func filesAndFoldersAreMadePrivate(resolver: SafeFolder.Resolver) throws {
        let scene = try Scene()
        let folder = try scene.open(resolver)
        try folder.makeFolder("sessions/a/b")
        try folder.makeFolder("sessions/a/b")  // already there: fine
        for path in ["sessions", "sessions/a", "sessions/a/b"] {
            let status = try folder.status(path)
            #expect(status.kind == .folder && status.owner == geteuid() && status.mode == 0o700, "\(path): \(status)")
        }
        try folder.write("sessions/a/b/s.jsonl", Array("one\n".utf8), sync: true)
        try folder.append("sessions/a/b/s.jsonl", Array("two\n".utf8))
        try folder.append("events.jsonl", Array("new\n".utf8))
        #expect(try folder.read("sessions/a/b/s.jsonl") == Array("one\ntwo\n".utf8))
        #expect(try folder.read("events.jsonl") == Array("new\n".utf8))
        #expect(try folder.status("events.jsonl").mode == 0o600)
        #expect(failure { try folder.makeFolder("events.jsonl") }?.code == EEXIST)
        #expect(failure { _ = try folder.read("sessions/none") }?.code == ENOENT)
    }

    @Test(arguments: resolvers) func listingTellsKinds(resolver: SafeFolder.Resolver) throws {
        let scene = try Scene()
        let folder = try scene.open(resolver)
        try folder.write("tasks/bg_00000001/task.json", [])
        try scene.link("tasks/bg_00000001/link", to: "/etc")
        try #require(mkfifo(scene.root + "/tasks/bg_00000001/fifo", 0o600) == 0)
        try folder.makeFolder("tasks/bg_00000001/sub")
        let entries = try folder.list("tasks/bg_00000001").sorted { $0.name < $1.name }
        #expect(entries.map(\.name) == ["fifo", "link", "sub", "task.json"])
        #expect(entries.map(\.kind) == [.other, .symlink, .folder, .file])
        // A FIFO planted as a file is refused at once rather than blocking the reader.
        #expect(failure { _ = try folder.read("tasks/bg_00000001/fifo") }?.code == EINVAL)
        #expect(failure { _ = try folder.read("tasks/bg_00000001/sub") }?.code == EISDIR)
    }

    @Test(arguments: resolvers) func removeTreeStaysInside(resolver: SafeFolder.Resolver) throws {
        let scene = try Scene()
        let folder = try scene.open(resolver)
        try folder.makeFolder("tasks/bg_00000001/a/b")
        try folder.write("tasks/bg_00000001/a/b/file", [1, 2, 3])
        try folder.write("tasks/bg_00000001/task.json", [])
        try scene.link("tasks/bg_00000001/a/out", to: scene.outside)
        try scene.link("tasks/bg_00000001/a/b/secret", to: scene.outside + "/secret.txt")
        try folder.removeTree("tasks/bg_00000001")
        #expect(try folder.list("tasks").isEmpty)
        try folder.removeTree("tasks/bg_00000001")  // gone already: fine
        scene.expectOutsideUntouched()
        #expect(failure { try folder.removeFile("tasks/bg_00000001") }?.code == ENOENT)
    }

    @Test(arguments: resolvers) func replaceIsAtomic(resolver: SafeFolder.Resolver) throws {
        let scene = try Scene()
        let folder = try scene.open(resolver)
        let task = "tasks/bg_00000001/task.json"
        try folder.replace(task, Array("first".utf8))
        try folder.replace(task, Array("second".utf8), sync: false)
        #expect(try folder.read(task) == Array("second".utf8))
        #expect(try folder.status(task).mode == 0o600)
        #expect(try folder.list("tasks/bg_00000001").map(\.name) == ["task.json"])
        // A rename that fails (a folder in the way) leaves what was there and no .tmp.
        try folder.makeFolder("tasks/bg_00000001/result.md/inner")
        #expect(failure { try folder.replace("tasks/bg_00000001/result.md", Array("x".utf8)) } != nil)
        #expect(try folder.list("tasks/bg_00000001").map(\.name).sorted() == ["result.md", "task.json"])
        #expect(try folder.status("tasks/bg_00000001/result.md").kind == .folder)
    }

    /// A full disk, from a small tmpfs mounted on the root (root only, as the fault suite).
    @Test(.enabled(if: geteuid() == 0), arguments: resolvers)
    func aFullDiskCutsNothingInHalf(resolver: SafeFolder.Resolver) throws {
        let scene = try Scene()
        removeTree(scene.root)
        try FileSystem.makeDirectories(scene.root)
        try #require(mount("tmpfs", scene.root, "tmpfs", 0, "size=256k,mode=0700") == 0, "mount: errno \(errno)")
        defer { umount2(scene.root, Int32(MNT_DETACH)) }
        let folder = try scene.open(resolver)
        try folder.makeFolder("tasks/bg_00000001")
        let task = "tasks/bg_00000001/task.json"
        try folder.replace(task, Array("old".utf8))
        try folder.append("events.jsonl", Array("line\n".utf8))

        // Fill the filesystem, then give back 16 KiB: a 100 KiB write starts, then fails.
        let filler = open(scene.root + "/filler", O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        try #require(filler >= 0)
        let block = [UInt8](repeating: 0, count: 4096)
        var filled = 0
        while block.withUnsafeBytes({ Glibc.write(filler, $0.baseAddress, $0.count) }) > 0 { filled += 4096 }
        try #require(ftruncate(filler, off_t(filled - 16384)) == 0)
        close(filler)

        let big = [UInt8](repeating: UInt8(ascii: "x"), count: 100 << 10)
        #expect(failure { try folder.append("events.jsonl", big) }?.code == ENOSPC)
        #expect(try folder.read("events.jsonl") == Array("line\n".utf8))
        #expect(failure { try folder.replace(task, big) }?.code == ENOSPC)
        #expect(try folder.read(task) == Array("old".utf8))
        #expect(try folder.list("tasks/bg_00000001").map(\.name) == ["task.json"])

        // Room again: both go through.
        try folder.removeFile("filler")
        try folder.append("events.jsonl", big)
        try folder.replace(task, big)
        #expect(try folder.read("events.jsonl").count == 5 + big.count)
        #expect(try folder.read(task) == big)
    }

    @Test func oneFolderServesManyThreads() async throws {
        let scene = try Scene()
        let folder = try scene.open(.kernel)
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<8 {
                group.addTask {
                    for line in 0..<50 { try? folder.append("events.jsonl", Array("\(worker).\(line)\n".utf8)) }
                }
            }
        }
        let lines = String(decoding: try folder.read("events.jsonl"), as: UTF8.self).split(separator: "\n")
        #expect(lines.count == 400)
        #expect(Set(lines).count == 400)
    }
}

/// The FileError a body throws; nil if it succeeds (or throws anything else).
func failure(_ body: () throws -> Void) -> FileError? {
    do {
        try body()
        return nil
    } catch {
        return error as? FileError
    }
}
