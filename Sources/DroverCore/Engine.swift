/// A supervisor in a folder: its loop, its store and its supervisor, wired together in one
/// place for `drover run`, `drover serve` and `drover demo`.
public final class Engine {
    public let loop: EventLoop
    public let store: ResultStore
    public let supervisor: Supervisor

    /// A folder that cannot be used, with why (the command exits 2, naming it).
    public struct FolderError: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    /// `durable: false` skips the syncs (tests, scratch runs).
    public init(folder: String, config: DroverConfig, launch: WorkerLaunch, policy: PersistencePolicy, durable: Bool = true,
                workingDirectory: String = FileSystem.currentDirectory()) throws(FolderError)
    {
        // SPEC 16.4: refused before anything is read or written in it, and checked again
        // through the descriptor the store then holds (the path could change in between).
        do {
            try FolderPermissions.check(path: folder)
        } catch {
            throw FolderError(description: error.description)
        }
        loop = EventLoop()
        do {
            store = try ResultStore(loop: loop, root: folder, durable: durable,
                                    rotation: LogRotation(maxBytes: config.maxLogBytes, maxFiles: config.maxLogFiles))
        } catch {
            throw FolderError(description: error.description)
        }
        do {
            try FolderPermissions.check(store.folder)
        } catch {
            store.close()
            throw FolderError(description: error.description)
        }
        supervisor = Supervisor(loop: loop, config: config, store: store, launch: launch, policy: policy, workingDirectory: workingDirectory)
    }
}
