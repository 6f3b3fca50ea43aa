import CLibUV

/// A one-shot or repeating uv_timer with a Swift action. Stopping or dropping it cancels the
/// action; the handle's memory is freed by libuv's close callback.
public final class LoopTimer {
    private let handle: UnsafeMutablePointer<uv_timer_t>
    private var action: (() -> Void)?

    public init(loop: EventLoop) {
        handle = allocateHandle(uv_timer_t.self)
        uv_timer_init(loop.raw, handle)
        handle.pointee.data = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit {
        closeAndFree(handle)
    }

    /// Fires `action` after `ms`, then every `repeatMs` if that is above 0. Replaces any
    /// earlier schedule.
    public func start(after ms: Int, repeat repeatMs: Int = 0, _ action: @escaping () -> Void) {
        self.action = action
        uv_timer_start(handle, { timer in
            let owner = Unmanaged<LoopTimer>.fromOpaque(timer!.pointee.data).takeUnretainedValue()
            owner.fire()
        }, UInt64(max(0, ms)), UInt64(max(0, repeatMs)))
    }

    public func stop() {
        uv_timer_stop(handle)
        action = nil
    }

    public var isActive: Bool { uv_is_active(asHandle(handle)) != 0 }

    /// An unreferenced timer does not keep the loop running.
    public func unref() { uv_unref(asHandle(handle)) }

    private func fire() {
        guard let action else { return }
        if uv_timer_get_repeat(handle) == 0 { self.action = nil }
        action()
    }
}
