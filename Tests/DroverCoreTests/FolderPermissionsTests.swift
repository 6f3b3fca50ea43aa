@testable import DroverCore
import DroverTestSupport
import Glibc
import Testing

@Suite struct FolderPermissionsTests {
    /// A temporary folder holding `state` with tasks/ and sessions/, all with exact modes.
    final class Scene {
        let base: String
        var state: String { base + "/state" }

        init(mode: mode_t = 0o700) throws {
            base = try temporaryFolder()
            for path in [state, state + "/tasks", state + "/sessions"] {
                try #require(mkdir(path, 0o700) == 0)
                try #require(chmod(path, 0o700) == 0)
            }
            try #require(chmod(state, mode) == 0)
        }

        deinit { removeTree(base) }

        /// The error `check(path:)` gives, or nil when it accepts the folder.
        func refusal(_ path: String? = nil) -> FolderPermissionError? {
            refusalOf { try FolderPermissions.check(path: path ?? state) }
        }
    }

    static let me = FolderPermissions.userName(geteuid(), withUID: false)

    @Test(arguments: [mode_t(0o700), 0o755, 0o750, 0o711])
    func acceptsAPrivateFolderOfOurOwn(mode: mode_t) throws {
        let scene = try Scene(mode: mode)
        #expect(scene.refusal() == nil)
        try FolderPermissions.check(SafeFolder(root: scene.state))
    }

    @Test func acceptsMissingFolders() throws {
        let scene = try Scene()
        rmdir(scene.state + "/sessions")
        #expect(scene.refusal() == nil)
        removeTree(scene.state)
        #expect(scene.refusal() == nil)  // drover makes it, private
    }

    @Test(arguments: [mode_t(0o777), 0o770, 0o720, 0o702, 0o775])
    func refusesAFolderOthersCanWrite(mode: mode_t) throws {
        let scene = try Scene(mode: mode)
        let error = try #require(scene.refusal())
        #expect(error.problem == .writableByOthers)
        #expect(error.path == scene.state)
        #expect(error.mode == mode)
        let text = error.description
        #expect(text.contains(scene.state))
        #expect(text.contains("owned by \(Self.me) (uid \(geteuid()))"), "\(text)")
        #expect(text.contains("mode 0" + String(mode, radix: 8)), "\(text)")
        #expect(text.contains("chmod 700 \(scene.state)"), "\(text)")
    }

    @Test(arguments: ["tasks", "sessions"])
    func refusesALooseSubfolder(name: String) throws {
        let scene = try Scene()
        try #require(chmod(scene.state + "/" + name, 0o777) == 0)
        let error = try #require(scene.refusal())
        #expect(error.problem == .writableByOthers)
        #expect(error.path == scene.state + "/" + name)
        #expect(error.description.contains("mode 0777"))
        #expect(error.description.contains("all users can write"), "\(error)")
    }

    @Test func refusesALinkedTasksFolder() throws {
        let scene = try Scene()
        try FileSystem.makeDirectories(scene.base + "/elsewhere")  // ours and private: still a link
        rmdir(scene.state + "/tasks")
        try #require(symlink(scene.base + "/elsewhere", scene.state + "/tasks") == 0)
        let error = try #require(scene.refusal())
        #expect(error.problem == .symlink)
        #expect(error.path == scene.state + "/tasks")
        #expect(error.description.contains("symbolic link"))
        #expect(error.description.contains("owned by \(Self.me)"))
        #expect(error.description.contains("rm \(scene.state)/tasks && mkdir -m 700 \(scene.state)/tasks"), "\(error)")
    }

    @Test func refusesALinkedFolderAndAFileInPlaceOfOne() throws {
        let scene = try Scene()
        try #require(symlink(scene.state, scene.base + "/link") == 0)
        let error = try #require(scene.refusal(scene.base + "/link"))
        #expect(error.problem == .symlink && error.path == scene.base + "/link")
        rmdir(scene.state + "/sessions")
        try FileSystem.writeFile(scene.state + "/sessions", [])
        #expect(scene.refusal()?.problem == .notAFolder)
    }

    @Test func checksTheOpenFolderItself() throws {
        let scene = try Scene()
        let folder = try SafeFolder(root: scene.state)
        try FolderPermissions.check(folder)
        // What drover holds open is what is checked, whatever the path names now.
        try #require(rename(scene.state, scene.base + "/moved") == 0)
        try #require(chmod(scene.base + "/moved", 0o770) == 0)
        #expect(refusalOf { try FolderPermissions.check(folder) }?.path == scene.state)
        try #require(chmod(scene.base + "/moved", 0o700) == 0)
        try #require(chmod(scene.base + "/moved/tasks", 0o730) == 0)
        let error = try #require(refusalOf { try FolderPermissions.check(folder) })
        #expect(error.problem == .writableByOthers && error.path == scene.state + "/tasks")
        #expect(error.description.contains("its group can write"))
    }

    @Test(.enabled(if: geteuid() == 0), arguments: ["", "/tasks"])
    func refusesAFolderOfAnotherUser(subfolder: String) throws {
        let nobody = try #require(getpwnam("nobody")).pointee.pw_uid
        let scene = try Scene()
        try #require(chown(scene.state + subfolder, nobody, gid_t(nobody)) == 0)
        let error = try #require(scene.refusal())
        #expect(error.problem == .ownedByAnotherUser)
        #expect(error.owner == nobody)
        let text = error.description
        #expect(text.contains(scene.state + subfolder + ","), "\(text)")
        #expect(text.contains("owned by nobody (uid \(nobody)) with mode 0700"), "\(text)")
        #expect(text.contains("chown -R \(Self.me) \(scene.state + subfolder)"), "\(text)")
    }

    @Test func userNames() {
        #expect(FolderPermissions.userName(0) == "root (uid 0)")
        #expect(FolderPermissions.userName(0, withUID: false) == "root")
        #expect(FolderPermissions.userName(4_000_000_000) == "uid 4000000000")
    }

    @Test func quotesAPathThatNeedsIt() throws {
        let scene = try Scene()
        let odd = scene.base + "/it's here"
        try #require(mkdir(odd, 0o777) == 0 && chmod(odd, 0o777) == 0)
        let error = try #require(scene.refusal(odd))
        #expect(error.description.contains("chmod 700 '\(scene.base)/it'\\''s here'"), "\(error)")
    }
}

/// The FolderPermissionError a body throws; nil if it succeeds (or throws anything else).
func refusalOf(_ body: () throws -> Void) -> FolderPermissionError? {
    do {
        try body()
        return nil
    } catch {
        return error as? FolderPermissionError
    }
}
