//! How many threads bp's work is shared over, and the rayon pool that runs it.
//!
//! bp-core's matrix products ([`Products`](crate::Products)), and bp-train's batch gather and
//! updates of large parameters, cut their work into parts and run them on a rayon pool of
//! [`threads`] threads. The pool for a thread count is built on first use and kept for the life
//! of the process. [`install`] runs a closure on it (a training loop runs its steps so, and its
//! parts then go to the other threads without a hand-over from outside the pool, which would
//! allocate); work started outside the pool is handed to it the same way, and work started on a
//! thread of a rayon pool runs on that pool.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use rayon::{ThreadPool, ThreadPoolBuilder};

/// 0: not set, use the default (see [`set_threads`]).
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// Sets how many threads bp's work is shared over: 1 keeps it all on the calling thread, `n`
/// shares it over a pool of `n` threads (built the first time it is used, then kept). 0 restores
/// the default: the environment variable `BP_THREADS` if it holds a positive number, else the
/// number of CPUs available to this process (`std::thread::available_parallelism`).
///
/// Results do not depend on this setting: how a product is cut depends on its shape alone where
/// the cut could change the bits, and each output element is computed by one thread.
///
/// ```
/// bp_core::set_threads(3);
/// assert_eq!(bp_core::threads(), 3);
/// bp_core::set_threads(0);
/// assert!(bp_core::threads() >= 1);
/// ```
pub fn set_threads(threads: usize) {
    THREADS.store(threads, Ordering::Relaxed);
}

/// The number of threads bp's work is shared over; see [`set_threads`].
pub fn threads() -> usize {
    match THREADS.load(Ordering::Relaxed) {
        0 => {
            static DEFAULT: OnceLock<usize> = OnceLock::new();
            *DEFAULT.get_or_init(|| {
                std::env::var("BP_THREADS")
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            })
        }
        n => n,
    }
}

/// The pool of `threads` threads (more than 1), built on first use; `None` if the system refuses
/// to start its threads (then the work runs on the calling thread).
fn pool(threads: usize) -> Option<Arc<ThreadPool>> {
    /// One pool per thread count asked for: a process normally uses one, tests several.
    static POOLS: Mutex<Vec<(usize, Arc<ThreadPool>)>> = Mutex::new(Vec::new());
    let mut pools = POOLS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, pool)) = pools.iter().find(|(n, _)| *n == threads) {
        return Some(Arc::clone(pool));
    }
    let pool = Arc::new(
        ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("bp-{i}"))
            .build()
            .ok()?,
    );
    // Every thread has started (and made the allocations a thread makes when it starts) before
    // the pool is used: a training step that follows allocates nothing.
    pool.broadcast(|_| ());
    pools.push((threads, Arc::clone(&pool)));
    Some(pool)
}

/// Whether the calling thread is one of a rayon pool of `threads` threads (so that work split
/// with `rayon::join` runs on it).
fn inside(threads: usize) -> bool {
    rayon::current_thread_index().is_some() && rayon::current_num_threads() == threads
}

/// Runs `op` on the pool of [`threads`] threads and returns its result: on the calling thread if
/// it is already one of that pool's (or the setting is 1 thread), else on one of the pool's
/// threads while the caller waits. Work that `op` shares with `rayon::join` or rayon's parallel
/// iterators, bp's products among it, then runs on the pool's threads.
///
/// ```
/// bp_core::set_threads(2);
/// let sum = bp_core::install(|| {
///     let (a, b) = rayon::join(|| (1..=50u64).sum::<u64>(), || (51..=100u64).sum::<u64>());
///     a + b
/// });
/// assert_eq!(sum, 5050);
/// bp_core::set_threads(0);
/// ```
pub fn install<R: Send>(op: impl FnOnce() -> R + Send) -> R {
    install_on(threads(), op)
}

/// [`install`] on the pool of `threads` threads.
pub(crate) fn install_on<R: Send>(threads: usize, op: impl FnOnce() -> R + Send) -> R {
    if threads <= 1 || inside(threads) {
        return op();
    }
    match pool(threads) {
        Some(pool) => pool.install(op),
        None => op(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Work shared over a pool of 4 runs on more than one of its threads, and on the pool's
    /// threads, not the caller's.
    #[test]
    fn shared_work_runs_on_several_threads() {
        let caller = std::thread::current().id();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100 {
            let slow = || {
                std::thread::sleep(std::time::Duration::from_millis(1));
                std::thread::current().id()
            };
            let (a, b) = install_on(4, || rayon::join(slow, slow));
            seen.extend([a, b]);
            if seen.len() > 1 {
                break;
            }
        }
        assert!(seen.len() > 1, "all work ran on one thread");
        assert!(!seen.contains(&caller));
    }

    /// A pool of each size is built once.
    #[test]
    fn pools_are_kept() {
        let first = pool(3).expect("threads start");
        let again = pool(3).expect("threads start");
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(first.current_num_threads(), 3);
        assert_eq!(install_on(3, rayon::current_num_threads), 3);
        assert_eq!(install_on(1, rayon::current_thread_index), None);
    }
}
