//! The release build's runtime: no std, so no panic formatting machinery
//! and no dlmalloc. The guard allocates only when it is created, so a
//! simple free-list allocator is plenty.
//!
//! Nothing in the guard is meant to panic (every JS call's error is handled
//! and borrows are `try_`); if something still does, the wasm traps and the
//! JS caller sees a `RuntimeError`, the same as `panic = "abort"` with std.

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}

// SAFETY: wasm32-unknown-unknown without atomics is single-threaded.
#[global_allocator]
static ALLOCATOR: lol_alloc::AssumeSingleThreaded<lol_alloc::FreeListAllocator> =
    unsafe { lol_alloc::AssumeSingleThreaded::new(lol_alloc::FreeListAllocator::new()) };
