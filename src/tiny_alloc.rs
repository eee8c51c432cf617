//! The release build's allocator: lol_alloc's free list instead of std's
//! dlmalloc, about 3 KB gz smaller. The guard allocates little, and mostly
//! when it is created or changes state, so a simple allocator is plenty.

// SAFETY: wasm32-unknown-unknown without atomics is single-threaded.
#[global_allocator]
static ALLOCATOR: lol_alloc::AssumeSingleThreaded<lol_alloc::FreeListAllocator> =
    unsafe { lol_alloc::AssumeSingleThreaded::new(lol_alloc::FreeListAllocator::new()) };
