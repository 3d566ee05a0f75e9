import Synchronization

/// Orders guest-visible writes: ring entries before the index that publishes them.
@inline(__always) func atomicThreadFenceRelease() {
    atomicMemoryFence(ordering: .releasing)
}

@inline(__always) func atomicThreadFenceSequential() {
    atomicMemoryFence(ordering: .sequentiallyConsistent)
}
