//! Work shared between the calling thread and one helper thread.
//!
//! [`join`] runs two closures, the first on the calling thread and the second on a helper thread
//! that the process starts on first use (one for every caller), and returns when both are done.
//! The layers' large matrix products use it: [`Products::product`] cuts `C = op(A) · op(B)` in two
//! along the rows of `C`, and each thread writes its own rows; or along its columns, when `C` is
//! more than twice as wide as tall, so that each thread reads only half of the larger operand, and
//! then the helper writes its part into a buffer the layer keeps, which the caller copies into
//! place (the part's columns are not contiguous in `C`). Each output element is computed by exactly one thread, with the same operations in the
//! same order as in the unsplit product (see `gemm`; for the large products it leaves to
//! `matrixmultiply`, that crate blocks the shared dimension identically whatever the rows and
//! columns), so the result is bit for bit the one the single-threaded product gives, whatever the
//! timing. A training loop uses `join` for its own work too (gathering a batch, updating large
//! parameters), on the same helper.
//!
//! The helper polls for a short while after each job before it sleeps, so that the jobs of one
//! training step (a few tens of microseconds apart) do not each pay a thread wake-up. If the
//! helper has not started the second closure by the time the caller has finished the first (it
//! was asleep, or the machine is busy and it got no CPU), the caller takes it back and runs it
//! itself: a busy machine costs at most the single-threaded time. While one caller is in a `join`
//! with the helper, other threads' `join`s run both closures on their own thread.
//!
//! The closures borrow from the caller: the helper gets a pointer to the second one, and `join`
//! does not return, not even by a panic, before the helper has finished with it or the caller has
//! taken it back (see `JobRef`, the module's one `unsafe`). A `join` allocates nothing.

use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis, NdFloat, Slice};

use crate::gemm;

/// Products with fewer multiply-adds than this run on the calling thread alone: below it, handing
/// half to the helper costs more than it saves.
pub(crate) const MIN_PARALLEL_FMAS: usize = 1 << 20;

/// Rows or columns of `C` (whichever is more) below which a product is not split.
const MIN_PARALLEL_ROWS: usize = 32;

/// How long the helper keeps polling for the next job before it sleeps.
const HELPER_SPIN: Duration = Duration::from_micros(200);

/// Output buffers of different shapes a layer keeps for the helper's parts.
const MAX_SPARES: usize = 4;

/// The `join`s that run on the caller alone after the helper misses one (see [`Cooldown`]): at
/// first, and at most.
const MIN_COOLDOWN: u32 = 2;
const MAX_COOLDOWN: u32 = 64;

/// How long the caller polls for the helper's result before it yields its time slice between
/// polls.
const CALLER_SPIN: Duration = Duration::from_micros(100);

/// 0: not set, use the machine's parallelism.
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// Sets how many threads [`join`] (and so a layer's large matrix product) may use: 1 keeps all
/// work on the calling thread, 2 or more lets it share work with one helper thread (more than two
/// are not used). 0 restores the default: the environment variable `BP_THREADS` if it holds a
/// positive number, else 2 if the machine has at least two CPUs available to this process
/// (`std::thread::available_parallelism`), else 1.
///
/// The layers' results do not depend on this setting: a split product computes each output element
/// with the same operations, in the same order, as the unsplit one.
///
/// ```
/// bp_core::set_threads(1);
/// assert_eq!(bp_core::threads(), 1);
/// bp_core::set_threads(0);
/// assert!(bp_core::threads() >= 1);
/// ```
pub fn set_threads(threads: usize) {
    THREADS.store(threads, Ordering::Relaxed);
}

/// The number of threads [`join`] uses (1 or 2); see [`set_threads`].
pub fn threads() -> usize {
    match THREADS.load(Ordering::Relaxed) {
        0 => {
            static DEFAULT: OnceLock<usize> = OnceLock::new();
            *DEFAULT.get_or_init(|| {
                let from_env = std::env::var("BP_THREADS")
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .filter(|&n| n > 0);
                from_env
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
                    .min(2)
            })
        }
        n => n.min(2),
    }
}

/// Runs `a` on the calling thread and `b` on the helper thread, and returns both results once
/// both are done. `b` runs on the calling thread too, after `a`, when [`threads`] is 1, when the
/// helper is busy with another caller's `join`, when it missed one of the last few `join`s (a busy
/// machine), or when it has not started `b` by the time `a` is done. So `a` and `b` must not
/// depend on each other's progress (say, `b` waiting for something `a` does): each must be able to
/// run to completion on its own.
///
/// Both closures run to the end even if the other panics; then the panic (the first closure's,
/// if both do) is raised again on the calling thread.
///
/// ```
/// let mut data = vec![1u64; 1000];
/// let (left, right) = data.split_at_mut(500);
/// let (a, b) = bp_core::join(
///     || left.iter_mut().map(|v| { *v *= 2; *v }).sum::<u64>(),
///     || right.iter_mut().map(|v| { *v *= 3; *v }).sum::<u64>(),
/// );
/// assert_eq!((a, b), (1000, 1500));
/// assert_eq!((data[0], data[999]), (2, 3));
/// ```
pub fn join<RA, RB, FA, FB>(a: FA, b: FB) -> (RA, RB)
where
    FA: FnOnce() -> RA,
    FB: FnOnce() -> RB + Send,
    RB: Send,
{
    match Lease::take() {
        Some(lease) => lease.join(a, b),
        None => {
            let ra = panic::catch_unwind(AssertUnwindSafe(a));
            let rb = panic::catch_unwind(AssertUnwindSafe(b));
            both(ra, rb)
        }
    }
}

/// Both results, or the first panic raised again.
fn both<RA, RB>(ra: std::thread::Result<RA>, rb: std::thread::Result<RB>) -> (RA, RB) {
    match (ra, rb) {
        (Ok(ra), Ok(rb)) => (ra, rb),
        (Err(payload), _) | (_, Err(payload)) => panic::resume_unwind(payload),
    }
}

/// The second closure of a [`join`] as the helper thread sees it: a pointer to a closure on the
/// caller's stack, its lifetime erased.
struct JobRef(*mut (dyn FnMut() + Send + 'static));

// SAFETY: the closure behind the pointer is `Send` (its type says so), and `JobRef::new`'s caller
// keeps it alive and unused until the helper has finished with it.
#[allow(unsafe_code)]
unsafe impl Send for JobRef {}

impl JobRef {
    /// Points to `job`, forgetting its lifetime.
    ///
    /// # Safety
    ///
    /// `job` must stay alive, and be neither used nor moved, until the `JobRef` has been run or
    /// dropped.
    #[allow(unsafe_code)]
    unsafe fn new<'a>(job: &'a mut (dyn FnMut() + Send + 'a)) -> Self {
        let job: *mut (dyn FnMut() + Send + 'a) = job;
        // SAFETY: only the lifetime changes, and the caller keeps `job` alive while it is used.
        JobRef(unsafe {
            std::mem::transmute::<*mut (dyn FnMut() + Send + 'a), *mut (dyn FnMut() + Send + 'static)>(
                job,
            )
        })
    }

    /// Runs the closure.
    ///
    /// # Safety
    ///
    /// As for [`JobRef::new`]: the closure is still alive and no one else uses it.
    #[allow(unsafe_code)]
    unsafe fn run(self) {
        // SAFETY: the caller's promise.
        unsafe { (*self.0)() }
    }
}

/// The helper thread and what it shares with its callers.
struct Worker {
    state: Mutex<State>,
    wake: Condvar,
    /// `state.job` is set (a hint, so that a polling helper need not take the lock).
    pending: AtomicBool,
    /// The helper has run the job it took last.
    done: AtomicBool,
    /// A caller is in a `join` with the helper.
    leased: AtomicBool,
    /// Touched only by the caller that holds the lease.
    cooldown: Mutex<Cooldown>,
    /// The helper thread has started: whatever the standard library allocates when a thread
    /// starts is done.
    started: AtomicBool,
}

/// What a caller and the helper share, behind the mutex.
struct State {
    /// A job waiting for the helper. Whoever takes it out runs it: the helper, or the caller
    /// itself if the helper has not started it by the time the caller's own closure is done.
    job: Option<JobRef>,
    /// The helper sleeps on the condition variable and must be woken for a new job.
    parked: bool,
}

/// After the helper misses a `join` (it had not started the second closure when the caller was
/// done with the first), the next `join`s run on the caller alone, so that on a machine busy with
/// other work the helper goes back to sleep instead of competing with the caller for a CPU:
/// [`MIN_COOLDOWN`] `join`s after a miss, twice as many after each further miss before the helper
/// shares one again, up to [`MAX_COOLDOWN`]. A lone miss (the helper was woken from sleep, or lost
/// its CPU for a moment) costs one step's shared work, not a long stretch of single-threaded steps.
#[derive(Debug)]
struct Cooldown {
    /// `join`s still to run on the caller alone.
    left: u32,
    /// The cooldown after the next miss.
    next: u32,
}

impl Cooldown {
    fn new() -> Self {
        Cooldown {
            left: 0,
            next: MIN_COOLDOWN,
        }
    }

    /// Whether the next `join` runs on the caller alone; `Some(true)` if it is the last of the
    /// cooldown (time to wake the helper).
    fn alone(&mut self) -> Option<bool> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        Some(self.left == 0)
    }

    /// The helper missed a `join`.
    fn missed(&mut self) {
        self.left = self.next;
        self.next = (2 * self.next).min(MAX_COOLDOWN);
    }

    /// The helper shared a `join`.
    fn shared(&mut self) {
        self.next = MIN_COOLDOWN;
    }
}

/// Locks `mutex`. A panic while it was held leaves nothing half-written that matters here (the
/// closures run outside the locks).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Worker {
    /// The process's helper, started on first use; `None` if no thread can be started.
    fn get() -> Option<&'static Worker> {
        static WORKER: OnceLock<Option<&'static Worker>> = OnceLock::new();
        *WORKER.get_or_init(Worker::spawn)
    }

    fn spawn() -> Option<&'static Worker> {
        // It lives as long as the process, as does its thread.
        let worker: &'static Worker = Box::leak(Box::new(Worker {
            state: Mutex::new(State {
                job: None,
                parked: false,
            }),
            wake: Condvar::new(),
            pending: AtomicBool::new(false),
            done: AtomicBool::new(false),
            leased: AtomicBool::new(false),
            cooldown: Mutex::new(Cooldown::new()),
            started: AtomicBool::new(false),
        }));
        std::thread::Builder::new()
            .name("bp-core-helper".into())
            .spawn(move || {
                worker.started.store(true, Ordering::Release);
                worker.run();
            })
            .ok()?;
        // Wait for the thread to start, so that its start-up allocations fall in the `join` that
        // started it and not in a later one (on a busy machine a new thread may not run for many
        // milliseconds).
        while !worker.started.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        Some(worker)
    }

    /// The helper thread's loop: take a job, run it, report it done.
    fn run(&self) -> ! {
        loop {
            let job = self.next_job();
            // SAFETY: the caller that published the job keeps the closure alive and unused until
            // `done` is set.
            #[allow(unsafe_code)]
            unsafe {
                job.run();
            }
            self.done.store(true, Ordering::Release);
        }
    }

    /// The next job: polls for `HELPER_SPIN`, then sleeps until woken, and after a wake-up without
    /// a job (a caller warming the helper up) polls again.
    fn next_job(&self) -> JobRef {
        loop {
            let start = Instant::now();
            while start.elapsed() < HELPER_SPIN {
                if self.pending.load(Ordering::Acquire)
                    && let Some(job) = self.take_job()
                {
                    return job;
                }
                for _ in 0..32 {
                    std::hint::spin_loop();
                }
            }
            let mut state = lock(&self.state);
            if state.job.is_none() {
                state.parked = true;
                state = self
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                state.parked = false;
            }
            if let Some(job) = state.job.take() {
                self.pending.store(false, Ordering::Relaxed);
                return job;
            }
        }
    }

    /// Takes the waiting job, if it is still there.
    fn take_job(&self) -> Option<JobRef> {
        let job = lock(&self.state).job.take();
        if job.is_some() {
            self.pending.store(false, Ordering::Relaxed);
        }
        job
    }

    /// Hands `job` to the helper, waking it if it sleeps.
    fn publish(&self, job: JobRef) {
        let parked = {
            let mut state = lock(&self.state);
            state.job = Some(job);
            state.parked
        };
        self.pending.store(true, Ordering::Release);
        if parked {
            self.wake.notify_one();
        }
    }

    /// Wakes the helper if it sleeps.
    fn wake_up(&self) {
        if lock(&self.state).parked {
            self.wake.notify_one();
        }
    }

    /// Waits until the helper has run the job it took.
    fn wait_done(&self) {
        let start = Instant::now();
        while !self.done.load(Ordering::Acquire) {
            if start.elapsed() < CALLER_SPIN {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        self.done.store(false, Ordering::Relaxed);
    }
}

/// A caller's exclusive use of the helper for one `join`; released on drop.
struct Lease {
    worker: &'static Worker,
}

impl Lease {
    /// The helper, if the settings allow a second thread, it is free, and it is not cooling down
    /// after a miss.
    fn take() -> Option<Lease> {
        if threads() < 2 {
            return None;
        }
        let worker = Worker::get()?;
        worker
            .leased
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        let lease = Lease { worker };
        if let Some(last) = lock(&worker.cooldown).alone() {
            if last {
                // Wake the helper now, so that it is polling when the next `join` comes.
                worker.wake_up();
            }
            return None;
        }
        Some(lease)
    }

    fn join<RA, RB, FA, FB>(self, a: FA, b: FB) -> (RA, RB)
    where
        FA: FnOnce() -> RA,
        FB: FnOnce() -> RB + Send,
        RB: Send,
    {
        let worker = self.worker;
        let mut b = Some(b);
        let mut rb = None;
        let mut call = || {
            if let Some(b) = b.take() {
                rb = Some(panic::catch_unwind(AssertUnwindSafe(b)));
            }
        };
        // SAFETY: `call` lives to the end of this function and is not touched until the helper
        // has run it (`wait_done`) or it has been taken back unrun (`take_job`); `a` runs under
        // `catch_unwind`, so nothing in between unwinds past this frame.
        #[allow(unsafe_code)]
        let job = unsafe { JobRef::new(&mut call) };
        worker.publish(job);
        let ra = panic::catch_unwind(AssertUnwindSafe(a));
        match worker.take_job() {
            // The helper did not get to it (it was asleep, or had no CPU): run it here.
            Some(_unstarted) => {
                call();
                lock(&worker.cooldown).missed();
            }
            None => {
                worker.wait_done();
                lock(&worker.cooldown).shared();
            }
        }
        drop(self);
        both(ra, rb.expect("the second closure ran"))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.worker.leased.store(false, Ordering::Release);
    }
}

/// One operand of a product: an array, read transposed or not.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Operand<'a, A> {
    pub(crate) array: &'a Array2<A>,
    pub(crate) transposed: bool,
}

impl<'a, A> Operand<'a, A> {
    pub(crate) fn new(array: &'a Array2<A>, transposed: bool) -> Self {
        Operand { array, transposed }
    }

    fn view(&self) -> ArrayView2<'a, A> {
        if self.transposed {
            self.array.t()
        } else {
            self.array.view()
        }
    }
}

/// Rows `rows` and columns `cols` of `op(a) · op(b)`, written into `out` from its first element on.
fn product_part<A: NdFloat>(
    a: Operand<'_, A>,
    b: Operand<'_, A>,
    rows: Range<usize>,
    cols: Range<usize>,
    out: ArrayViewMut2<'_, A>,
    scratch: &mut Vec<A>,
) {
    gemm::product(
        gemm::Kernels::detect(),
        a.array,
        a.transposed,
        b.array,
        b.transposed,
        rows,
        cols,
        out,
        (0, 0),
        scratch,
    );
}

/// `c = op(a) · op(b)` on the calling thread.
fn whole<A: NdFloat>(
    a: Operand<'_, A>,
    b: Operand<'_, A>,
    c: &mut Array2<A>,
    scratch: &mut Vec<A>,
) {
    let (m, n) = c.dim();
    product_part(a, b, 0..m, 0..n, c.view_mut(), scratch);
}

/// Whether a product of `m x k` by `k x n` is worth splitting.
pub(crate) fn worth_splitting(m: usize, k: usize, n: usize) -> bool {
    m.max(n) >= MIN_PARALLEL_ROWS
        && m.saturating_mul(k).saturating_mul(n) >= MIN_PARALLEL_FMAS
        && threads() > 1
}

/// A layer's matrix products, with the buffers they reuse: the kernels' scratch space for each
/// thread and the helper's output parts. Cloning gives empty buffers.
#[derive(Debug)]
pub(crate) struct Products<A> {
    buffers: Mutex<Buffers<A>>,
}

#[derive(Debug)]
struct Buffers<A> {
    /// The calling thread's scratch buffer (see `gemm::reserve_scratch`).
    scratch: Vec<A>,
    /// The helper's.
    helper_scratch: Vec<A>,
    /// The helper's output parts, one per shape (a training step has a few products of different
    /// shapes), kept so that a steady run reuses them.
    spares: Vec<Array2<A>>,
}

impl<A> Products<A> {
    pub(crate) fn new() -> Self {
        Products {
            buffers: Mutex::new(Buffers {
                scratch: Vec::new(),
                helper_scratch: Vec::new(),
                spares: Vec::with_capacity(MAX_SPARES),
            }),
        }
    }
}

impl<A> Clone for Products<A> {
    fn clone(&self) -> Self {
        Products::new()
    }
}

impl<A: NdFloat> Products<A> {
    /// `c = op(a) · op(b)`: shared with the helper thread through [`join`] if the product is large
    /// enough (see [`worth_splitting`]), else on the calling thread alone. The result is the same
    /// either way.
    ///
    /// # Panics
    ///
    /// If the shapes do not fit.
    #[track_caller]
    pub(crate) fn product(&self, a: Operand<'_, A>, b: Operand<'_, A>, c: &mut Array2<A>) {
        let (m, k) = a.view().dim();
        let n = b.view().ncols();
        assert!(
            b.view().nrows() == k && c.dim() == (m, n),
            "matrix product of {:?} and {:?} into an output of shape {:?}",
            a.view().shape(),
            b.view().shape(),
            c.shape()
        );
        let mut guard = match self.buffers.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            // Another thread is in one of this layer's products (concurrent `predict`s): compute
            // alone, with a scratch buffer of its own.
            Err(TryLockError::WouldBlock) => return whole(a, b, c, &mut Vec::new()),
        };
        let Buffers {
            scratch,
            helper_scratch,
            spares,
        } = &mut *guard;
        // Sized for every product, so that each thread's buffer has room for whichever part it
        // computes, and the helper never allocates.
        gemm::reserve_scratch(scratch, a.transposed, b.array, b.transposed);
        if !worth_splitting(m, k, n) {
            return whole(a, b, c, scratch);
        }
        split(a, b, c, scratch, helper_scratch, spares);
    }
}

/// `c = op(a) · op(b)`, cut in two and shared through [`join`]. A cut by rows gives each thread
/// its own rows of `c`; a cut by columns sends the helper's part through a buffer from `spares`
/// (its columns are not contiguous in `c`), kept there afterwards.
fn split<A: NdFloat>(
    a: Operand<'_, A>,
    b: Operand<'_, A>,
    c: &mut Array2<A>,
    scratch: &mut Vec<A>,
    helper_scratch: &mut Vec<A>,
    spares: &mut Vec<Array2<A>>,
) {
    let (m, n) = c.dim();
    gemm::reserve_scratch(helper_scratch, a.transposed, b.array, b.transposed);
    // By rows unless `C` is more than twice as wide as tall: a cut by rows copies nothing, but
    // each thread then reads all of `op(b)`. The wide net's `dW1` (784 x 800) is cut by rows, its
    // `x · W1` (100 x 800) by columns.
    if n <= 2 * m {
        let cut = m / 2;
        let (top, bottom) = c.view_mut().split_at(Axis(0), cut);
        join(
            || product_part(a, b, 0..cut, 0..n, top, scratch),
            || product_part(a, b, cut..m, 0..n, bottom, helper_scratch),
        );
        return;
    }
    // At a multiple of 16 (whole vectors in every kernel) at or below the middle: the caller also
    // copies the helper's part, so it takes the smaller share.
    let cut = (n / 2 / 16 * 16).max(16).min(n);
    let dim = (m, n - cut);
    let mut out = match spares.iter().position(|s| s.dim() == dim) {
        Some(i) => spares.swap_remove(i),
        None => Array2::zeros(dim),
    };
    join(
        || product_part(a, b, 0..m, 0..cut, c.view_mut(), scratch),
        || product_part(a, b, 0..m, cut..n, out.view_mut(), helper_scratch),
    );
    c.slice_axis_mut(Axis(1), Slice::from(cut..)).assign(&out);
    if spares.len() == MAX_SPARES {
        spares.remove(0);
    }
    spares.push(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::randn;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// The split product equals the single-threaded one bit for bit, for a cut by rows (C taller
    /// than wide, or wider by up to twice) and by columns (C wider than that), with transposed
    /// operands, in the kernels and in `matrixmultiply`, again and again with the same buffers.
    fn split_equals_unsplit<A: NdFloat>() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let (mut scratch, mut helper_scratch, mut spares) = (Vec::new(), Vec::new(), Vec::new());
        // (m, k, n, a transposed, b transposed)
        for (m, k, n, a_t, b_t) in [
            (100, 300, 40, false, false),
            (37, 200, 130, false, true),
            (300, 64, 50, true, false),
            (90, 33, 90, true, true),
            (64, 100, 120, true, false),
            // Between the two kernel sizes: `matrixmultiply` with AVX2, the kernels with AVX-512.
            (100, 784, 120, false, false),
            // Beyond both: `matrixmultiply`.
            (100, 784, 900, false, false),
        ] {
            let a_dim = if a_t { (k, m) } else { (m, k) };
            let b_dim = if b_t { (n, k) } else { (k, n) };
            let a = randn::<A, _, _>(a_dim, 1.0, &mut rng);
            let b = randn::<A, _, _>(b_dim, 1.0, &mut rng);
            let (a, b) = (Operand::new(&a, a_t), Operand::new(&b, b_t));
            let mut expected = Array2::zeros((m, n));
            whole(a, b, &mut expected, &mut Vec::new());
            for _ in 0..5 {
                let mut c = Array2::from_elem((m, n), A::nan());
                split(a, b, &mut c, &mut scratch, &mut helper_scratch, &mut spares);
                assert_eq!(c, expected, "{m}x{k}x{n}");
            }
        }
    }

    #[test]
    fn split_products_equal_unsplit_ones_f32() {
        split_equals_unsplit::<f32>();
    }

    #[test]
    fn split_products_equal_unsplit_ones_f64() {
        split_equals_unsplit::<f64>();
    }

    /// A layer's products, split or not, equal the single-threaded ones.
    #[test]
    fn products_equal_the_single_threaded_ones() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(8);
        let products = Products::<f32>::new();
        for (m, k, n) in [(100, 784, 50), (784, 100, 50), (4, 5, 6)] {
            let a = randn::<f32, _, _>((m, k), 1.0, &mut rng);
            let b = randn::<f32, _, _>((k, n), 1.0, &mut rng);
            let (a, b) = (Operand::new(&a, false), Operand::new(&b, false));
            let mut expected = Array2::zeros((m, n));
            whole(a, b, &mut expected, &mut Vec::new());
            let mut c = Array2::zeros((m, n));
            products.product(a, b, &mut c);
            assert_eq!(c, expected, "{m}x{k}x{n}");
        }
    }

    /// Both closures run once, whoever runs the second, and their results come back in order;
    /// a `join` inside a `join` runs too (on one thread).
    #[test]
    fn join_runs_both_closures_once() {
        for _ in 0..200 {
            let mut left = vec![0u32; 64];
            let mut right = vec![0u32; 64];
            let (a, (b, c)) = join(
                || {
                    left.iter_mut().for_each(|v| *v += 1);
                    left.len()
                },
                || {
                    right.iter_mut().for_each(|v| *v += 2);
                    join(|| 3, || "four")
                },
            );
            assert_eq!((a, b, c), (64, 3, "four"));
            assert!(left.iter().all(|&v| v == 1) && right.iter().all(|&v| v == 2));
        }
    }

    /// Threads that `join` at the same time each get both of their results: one shares the
    /// helper, the others run both closures themselves.
    #[test]
    fn concurrent_joins_keep_their_results_apart() {
        std::thread::scope(|scope| {
            for t in 0..4u64 {
                scope.spawn(move || {
                    for i in 0..500u64 {
                        let mut data = vec![t; 256];
                        let (left, right) = data.split_at_mut(100);
                        let (a, b) = join(
                            || {
                                left.iter_mut()
                                    .map(|v| std::mem::replace(v, i))
                                    .sum::<u64>()
                            },
                            || {
                                right
                                    .iter_mut()
                                    .map(|v| std::mem::replace(v, i + 1))
                                    .sum::<u64>()
                            },
                        );
                        assert_eq!((a, b), (100 * t, 156 * t));
                        assert!(data[..100].iter().all(|&v| v == i));
                        assert!(data[100..].iter().all(|&v| v == i + 1));
                    }
                });
            }
        });
    }

    /// A panic in either closure reaches the caller, after the other closure has finished.
    #[test]
    fn join_raises_either_panic_after_both_finish() {
        for first_panics in [true, false] {
            let finished = AtomicBool::new(false);
            let result = panic::catch_unwind(AssertUnwindSafe(|| {
                join(
                    || {
                        if first_panics {
                            panic!("first");
                        }
                        finished.store(true, Ordering::SeqCst);
                    },
                    || {
                        if !first_panics {
                            panic!("second");
                        }
                        std::thread::sleep(Duration::from_millis(2));
                        finished.store(true, Ordering::SeqCst);
                    },
                )
            }));
            let payload = result.expect_err("the panic comes through");
            let message = payload.downcast_ref::<&str>().copied();
            assert_eq!(message, Some(if first_panics { "first" } else { "second" }));
            assert!(finished.load(Ordering::SeqCst));
        }
        // The helper is still there for the next `join`.
        assert_eq!(join(|| 1, || 2), (1, 2));
    }

    /// A miss sends 2 `join`s to the caller alone; misses in a row double that up to 64; a shared
    /// `join` starts again from 2.
    #[test]
    fn cooldowns_double_while_the_helper_keeps_missing() {
        let mut cooldown = Cooldown::new();
        assert_eq!(cooldown.alone(), None);
        let mut lengths = Vec::new();
        for _ in 0..7 {
            cooldown.missed();
            let mut alone = 0;
            while let Some(last) = cooldown.alone() {
                alone += 1;
                assert_eq!(last, cooldown.left == 0);
            }
            lengths.push(alone);
        }
        assert_eq!(lengths, [2, 4, 8, 16, 32, 64, 64]);
        cooldown.shared();
        cooldown.missed();
        assert_eq!(
            (cooldown.alone(), cooldown.alone(), cooldown.alone()),
            (Some(false), Some(true), None)
        );
    }

    #[test]
    fn small_products_are_not_split() {
        assert!(!worth_splitting(100, 50, 10));
        assert!(!worth_splitting(8, 100_000, 8));
    }
}
