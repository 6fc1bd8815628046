//! A global allocator that counts allocations, for the tests that prove a training step allocates
//! nothing. Each test binary that declares `mod counting;` counts the allocations of every thread
//! but one: the test harness's, described at [`allocations`].

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The number of allocations (and reallocations) so far, in every thread of the test: the thread
/// that calls this, the threads it starts (bp-core's pool), and every other thread but
/// the process's main thread.
///
/// The test harness runs each test on a thread of its own while its main thread waits for the
/// result, and that wait allocates the first time it blocks: at a moment that depends on the
/// scheduler, on a busy machine in the middle of a test. So the main thread is left out, unless
/// the test itself runs on it (`--test-threads=1`), which the first call here detects.
pub fn allocations() -> usize {
    if on_main_thread() {
        COUNT_MAIN_THREAD.store(true, Ordering::Relaxed);
    }
    ALLOCATIONS.load(Ordering::Relaxed)
}

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

/// The test runs on the process's main thread, whose allocations then count.
static COUNT_MAIN_THREAD: AtomicBool = AtomicBool::new(false);

#[cfg(target_os = "linux")]
fn on_main_thread() -> bool {
    // SAFETY: `gettid` and `getpid` have no preconditions and touch no memory.
    unsafe { libc::gettid() == libc::getpid() }
}

/// Elsewhere every thread counts.
#[cfg(not(target_os = "linux"))]
fn on_main_thread() -> bool {
    false
}

fn count() {
    if COUNT_MAIN_THREAD.load(Ordering::Relaxed) || !on_main_thread() {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

struct Counting;

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;
