//! A counting global allocator, so the handshake harnesses can check that
//! parsing hostile input allocates a bounded amount of memory, not just
//! that it does not crash (libFuzzer's `-rss_limit_mb` only catches
//! blow-ups past the process limit).
//!
//! The counters are per thread, so `cargo test` running harnesses on
//! several threads at once (the seed replay) measures each one alone.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting live bytes and their high-water mark.
pub struct Counting;

thread_local! {
    // Const-initialised and without destructors: usable from inside the
    // allocator at any point of a thread's life. Signed, since a thread
    // may free what another allocated.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc(layout);
        if !ptr.is_null() {
            grow(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc_zeroed(layout);
        if !ptr.is_null() {
            grow(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        shrink(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = System.realloc(ptr, layout, new_size);
        if !new.is_null() {
            shrink(layout.size());
            grow(new_size);
        }
        new
    }
}

fn grow(size: usize) {
    let _ = LIVE.try_with(|live| {
        live.set(live.get().wrapping_add(size as isize));
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
    });
}

fn shrink(size: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().wrapping_sub(size as isize)));
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns its result with the most heap bytes that were live
/// at once during the call (on this thread), beyond what was live before it.
pub fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(before));
    let result = f();
    (result, usize::try_from(PEAK.with(Cell::get) - before).unwrap_or(0))
}

/// Heap bytes live on this thread now (allocated here and not freed here).
pub fn live() -> isize {
    LIVE.with(Cell::get)
}
