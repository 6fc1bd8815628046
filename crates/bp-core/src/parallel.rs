//! Large matrix products shared between the calling thread and one persistent helper thread.
//!
//! A product `C = op(A) · op(B)` is cut in two along the rows of `C` (or its columns, when `C` is
//! wider than tall, so that each thread packs only half of the larger operand): the caller computes
//! the first part straight into `C` while the helper computes the second into a buffer of its own,
//! which the caller then copies into place. Each output element is computed by exactly one thread,
//! with the same operations in the same order as in the unsplit product (see `gemm`; for the large
//! products it leaves to `matrixmultiply`, that crate blocks the shared dimension identically
//! whatever the rows and columns), so the result is bit for bit the one the single-threaded
//! product gives, whatever the timing.
//!
//! The operands reach the helper as `Arc`s: the layer keeps its weights and its cached input in
//! `Arc`s, hands the helper a clone for one product, and the helper drops it before it reports
//! back, so that the layer can take its arrays back mutably (`Arc::get_mut`) as soon as the product
//! returns. No borrowed data crosses threads and nothing here is `unsafe`.
//!
//! The helper polls for a short while after each product before it sleeps, so that the products of
//! one training step (a few tens of microseconds apart) do not each pay a thread wake-up. If the
//! helper has not started its half by the time the caller has finished its own (it was asleep, or
//! the machine is busy and it got no CPU), the caller takes the half back and computes it itself:
//! a busy machine costs at most the single-threaded time.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis, NdFloat, Slice};

use crate::gemm;

/// Products with fewer multiply-adds than this run on the calling thread alone: below it, handing
/// half to the helper costs more than it saves.
pub(crate) const MIN_PARALLEL_FMAS: usize = 1 << 20;

/// Rows or columns of `C` (whichever is more) below which a product is not split.
const MIN_PARALLEL_ROWS: usize = 32;

/// How long the helper keeps polling for the next product before it sleeps.
const HELPER_SPIN: Duration = Duration::from_micros(200);

/// Output buffers of different shapes a helper keeps.
const MAX_SPARES: usize = 4;

/// The products that run on the caller alone after the helper misses one (see [`Cooldown`]): at
/// first, and at most.
const MIN_COOLDOWN: u32 = 2;
const MAX_COOLDOWN: u32 = 64;

/// How long the caller polls for the helper's half before it yields its time slice between polls.
const CALLER_SPIN: Duration = Duration::from_micros(100);

/// 0: not set, use the machine's parallelism.
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// Sets how many threads a layer may use for one large matrix product: 1 keeps every product on
/// the calling thread, 2 or more lets it share large products with one helper thread (more than
/// two are not used). 0 restores the default: the environment variable `BP_THREADS` if it holds a
/// positive number, else 2 if the machine has at least two CPUs available to this process
/// (`std::thread::available_parallelism`), else 1.
///
/// The results do not depend on this setting: a split product computes each output element with
/// the same operations, in the same order, as the unsplit one.
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

/// The number of threads a layer uses for one large matrix product (1 or 2); see [`set_threads`].
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

/// One operand of a product, shared with the helper: an array, read transposed or not.
#[derive(Debug)]
pub(crate) struct Operand<A> {
    pub(crate) array: Arc<Array2<A>>,
    pub(crate) transposed: bool,
}

impl<A> Operand<A> {
    pub(crate) fn new(array: &Arc<Array2<A>>, transposed: bool) -> Self {
        Operand {
            array: Arc::clone(array),
            transposed,
        }
    }

    fn view(&self) -> ArrayView2<'_, A> {
        view(&self.array, self.transposed)
    }
}

/// A part of a product's output: some of its rows, or some of its columns.
#[derive(Clone, Debug)]
enum Part {
    Rows(Range<usize>),
    Cols(Range<usize>),
}

/// The helper's share of a product: `part` of `op(a) · op(b)`, written into `bufs.out`.
struct Job<A> {
    a: Operand<A>,
    part: Part,
    b: Operand<A>,
    bufs: Buffers<A>,
}

/// What the helper writes to in a product, lent to it by the caller, sized by the caller (so that
/// whatever the helper gets to compute, it allocates nothing), and handed back with the result.
struct Buffers<A> {
    /// The helper's part of the product.
    out: Array2<A>,
    /// Room for the copies the kernels make (see `gemm::reserve_scratch`).
    scratch: Vec<A>,
}

/// What the caller and the helper share, behind the mutex.
struct State<A> {
    /// A product waiting for the helper. Whoever takes it out computes it: the helper, or the
    /// caller itself if the helper has not started it by the time the caller's own half is done.
    job: Option<Job<A>>,
    /// The helper's finished half.
    result: Option<Buffers<A>>,
    /// The helper sleeps on the condition variable and must be woken for a new job.
    parked: bool,
    /// The layer is gone: the helper exits.
    stop: bool,
}

struct Shared<A> {
    state: Mutex<State<A>>,
    wake: Condvar,
    /// `state.job` is set (a hint, so that a polling helper need not take the lock).
    pending: AtomicBool,
    /// `state.result` is set (a hint, so that a polling caller need not take the lock).
    finished: AtomicBool,
    /// The helper thread has started: whatever the standard library allocates when a thread
    /// starts is done.
    started: AtomicBool,
}

impl<A> Shared<A> {
    fn lock(&self) -> MutexGuard<'_, State<A>> {
        // A panic while the lock is held leaves nothing half-written that matters here: the worst
        // case is a lost half, which the caller's `expect` reports.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A persistent helper thread for one layer's products. Dropping it stops the thread.
pub(crate) struct Helper<A> {
    shared: Arc<Shared<A>>,
    /// The helper's output buffers between products, one per shape (a training step has a few
    /// products of different shapes), kept so that a steady run reuses them.
    spares: Vec<Array2<A>>,
    /// The helper's scratch buffer between products.
    scratch: Vec<A>,
    cooldown: Cooldown,
    thread: Option<JoinHandle<()>>,
}

/// After the helper misses a product (it had not started it when the caller was done with its own
/// part), the next products run on the caller alone, so that on a machine busy with other work the
/// helper goes back to sleep instead of competing with the caller for a CPU: [`MIN_COOLDOWN`]
/// products after a miss, twice as many after each further miss before the helper shares a
/// product again, up to [`MAX_COOLDOWN`]. A lone miss (the helper was woken from sleep, or lost its
/// CPU for a moment) costs one step's split products, not a long stretch of single-threaded steps.
#[derive(Debug)]
struct Cooldown {
    /// Products still to run on the caller alone.
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

    /// Whether the next product runs on the caller alone; `Some(true)` if it is the last of the
    /// cooldown (time to wake the helper).
    fn alone(&mut self) -> Option<bool> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        Some(self.left == 0)
    }

    /// The helper missed a product.
    fn missed(&mut self) {
        self.left = self.next;
        self.next = (2 * self.next).min(MAX_COOLDOWN);
    }

    /// The helper shared a product.
    fn shared(&mut self) {
        self.next = MIN_COOLDOWN;
    }
}

impl<A> std::fmt::Debug for Helper<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Helper").finish_non_exhaustive()
    }
}

/// `part` of `op(a) · op(b)`, written into `out` from `at` on.
fn product_part<A: NdFloat>(
    a: &Operand<A>,
    part: &Part,
    b: &Operand<A>,
    out: &mut Array2<A>,
    at: (usize, usize),
    scratch: &mut Vec<A>,
) {
    let m = if a.transposed {
        a.array.ncols()
    } else {
        a.array.nrows()
    };
    let n = if b.transposed {
        b.array.nrows()
    } else {
        b.array.ncols()
    };
    let (rows, cols) = match part {
        Part::Rows(rows) => (rows.clone(), 0..n),
        Part::Cols(cols) => (0..m, cols.clone()),
    };
    gemm::product(
        gemm::Kernels::detect(),
        &a.array,
        a.transposed,
        &b.array,
        b.transposed,
        rows,
        cols,
        out,
        at,
        scratch,
    );
}

/// `c = op(a) · op(b)` on the calling thread.
fn whole<A: NdFloat>(a: &Operand<A>, b: &Operand<A>, c: &mut Array2<A>, scratch: &mut Vec<A>) {
    product_part(a, &Part::Rows(0..c.nrows()), b, c, (0, 0), scratch);
}

impl Part {
    /// This part of `c`.
    fn of<'c, A>(&self, c: &'c mut Array2<A>) -> ArrayViewMut2<'c, A> {
        match self {
            Part::Rows(rows) => c.slice_axis_mut(Axis(0), Slice::from(rows.clone())),
            Part::Cols(cols) => c.slice_axis_mut(Axis(1), Slice::from(cols.clone())),
        }
    }

    /// Where this part starts in the whole product.
    fn at(&self) -> (usize, usize) {
        match self {
            Part::Rows(rows) => (rows.start, 0),
            Part::Cols(cols) => (0, cols.start),
        }
    }
}

/// The helper thread's loop: take a job, compute it, hand back the result; poll for a while
/// between jobs, then sleep until woken.
fn helper_loop<A: NdFloat>(shared: &Shared<A>) {
    loop {
        let Some(job) = next_job(shared) else {
            return;
        };
        let Job {
            a,
            part,
            b,
            mut bufs,
        } = job;
        product_part(&a, &part, &b, &mut bufs.out, (0, 0), &mut bufs.scratch);
        // Release the operands before reporting, so that the caller can take them back.
        drop((a, b));
        shared.lock().result = Some(bufs);
        shared.finished.store(true, Ordering::Release);
    }
}

/// The next job for the helper: polls for `HELPER_SPIN`, then sleeps until woken, and after a
/// wake-up without a job (a caller warming the helper up) polls again. `None` when told to stop.
fn next_job<A>(shared: &Shared<A>) -> Option<Job<A>> {
    loop {
        let start = Instant::now();
        while start.elapsed() < HELPER_SPIN {
            if shared.pending.load(Ordering::Acquire) {
                let mut state = shared.lock();
                shared.pending.store(false, Ordering::Relaxed);
                if let Some(job) = state.job.take() {
                    return Some(job);
                }
            }
            for _ in 0..32 {
                std::hint::spin_loop();
            }
        }
        let mut state = shared.lock();
        if state.stop {
            return None;
        }
        if let Some(job) = state.job.take() {
            shared.pending.store(false, Ordering::Relaxed);
            return Some(job);
        }
        state.parked = true;
        let mut state = shared
            .wake
            .wait(state)
            .unwrap_or_else(PoisonError::into_inner);
        state.parked = false;
        if state.stop {
            return None;
        }
        if let Some(job) = state.job.take() {
            shared.pending.store(false, Ordering::Relaxed);
            return Some(job);
        }
    }
}

impl<A: NdFloat> Helper<A> {
    fn spawn() -> Option<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                job: None,
                result: None,
                parked: false,
                stop: false,
            }),
            wake: Condvar::new(),
            pending: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            started: AtomicBool::new(false),
        });
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("bp-core-matmul".into())
            .spawn(move || {
                theirs.started.store(true, Ordering::Release);
                helper_loop(&theirs);
            })
            .ok()?;
        // Wait for the thread to start, so that its start-up allocations fall in the product
        // that spawned it and not in a later step (on a busy machine a new thread may not run for
        // many milliseconds).
        while !shared.started.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        Some(Helper {
            shared,
            spares: Vec::with_capacity(MAX_SPARES),
            scratch: Vec::new(),
            cooldown: Cooldown::new(),
            thread: Some(thread),
        })
    }

    /// Keeps an output buffer for the next product of its shape.
    fn keep(&mut self, buf: Array2<A>) {
        if self.spares.len() == MAX_SPARES {
            self.spares.remove(0);
        }
        self.spares.push(buf);
    }

    /// Wakes the helper if it sleeps.
    fn wake(&self) {
        if self.shared.lock().parked {
            self.shared.wake.notify_one();
        }
    }

    /// `c = op(a) · op(b)`, shared with the helper thread; the caller's part uses `scratch`.
    ///
    /// # Panics
    ///
    /// If the shapes do not fit, or the helper thread died in a product.
    fn product(&mut self, a: Operand<A>, b: Operand<A>, c: &mut Array2<A>, scratch: &mut Vec<A>) {
        let (m, n) = c.dim();
        // Cut at a multiple of 16 (whole vectors in every kernel) at or below the middle: the caller
        // also copies the helper's part, so it takes the smaller share.
        let cut = |len: usize| (len / 2 / 16 * 16).max(16).min(len);
        let (mine, theirs, dim) = if n > m {
            let split = cut(n);
            (Part::Cols(0..split), Part::Cols(split..n), (m, n - split))
        } else {
            let split = cut(m);
            (Part::Rows(0..split), Part::Rows(split..m), (m - split, n))
        };
        // The helper's buffers are sized here, on the caller's thread, from every shape's first
        // product on (even one the caller then computes alone), so that the helper never
        // allocates, whichever products it gets to.
        let out = match self.spares.iter().position(|b| b.dim() == dim) {
            Some(i) => self.spares.swap_remove(i),
            None => Array2::zeros(dim),
        };
        gemm::reserve_scratch(&mut self.scratch, a.transposed, &b.array, b.transposed);
        if let Some(last) = self.cooldown.alone() {
            if last {
                // Wake the helper now, so that it is polling when the next product comes.
                self.wake();
            }
            self.keep(out);
            whole(&a, &b, c, scratch);
            return;
        }
        let bufs = Buffers {
            out,
            scratch: std::mem::take(&mut self.scratch),
        };
        let (a_mine, b_mine) = (
            Operand::new(&a.array, a.transposed),
            Operand::new(&b.array, b.transposed),
        );
        let parked = {
            let mut state = self.shared.lock();
            state.job = Some(Job {
                a,
                part: theirs.clone(),
                b,
                bufs,
            });
            state.parked
        };
        self.shared.pending.store(true, Ordering::Release);
        if parked {
            self.shared.wake.notify_one();
        }
        product_part(&a_mine, &mine, &b_mine, c, mine.at(), scratch);
        drop((a_mine, b_mine));
        let unstarted = self.shared.lock().job.take();
        let bufs = match unstarted {
            // The helper did not get to it (it was asleep, or had no CPU): do it here.
            Some(Job { a, part, b, bufs }) => {
                self.shared.pending.store(false, Ordering::Relaxed);
                product_part(&a, &part, &b, c, part.at(), scratch);
                self.cooldown.missed();
                bufs
            }
            None => {
                let start = Instant::now();
                while !self.shared.finished.load(Ordering::Acquire) {
                    if start.elapsed() < CALLER_SPIN {
                        std::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                    assert!(
                        self.thread.as_ref().is_some_and(|t| !t.is_finished())
                            || self.shared.finished.load(Ordering::Acquire),
                        "the matrix-product helper thread panicked"
                    );
                }
                self.shared.finished.store(false, Ordering::Relaxed);
                let bufs = self
                    .shared
                    .lock()
                    .result
                    .take()
                    .expect("the helper reports a finished half with its result");
                theirs.of(c).assign(&bufs.out);
                self.cooldown.shared();
                bufs
            }
        };
        self.keep(bufs.out);
        self.scratch = bufs.scratch;
    }
}

fn view<A>(array: &Array2<A>, transposed: bool) -> ArrayView2<'_, A> {
    if transposed { array.t() } else { array.view() }
}

impl<A> Drop for Helper<A> {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A lazily started helper thread and the calling thread's scratch buffer, as a layer keeps them.
/// Cloning gives an empty slot: each layer has its own helper.
#[derive(Debug)]
pub(crate) struct HelperSlot<A> {
    slot: Mutex<Slot<A>>,
}

#[derive(Debug)]
struct Slot<A> {
    helper: Option<Helper<A>>,
    /// The scratch buffer of the layer's products on the calling thread (see
    /// `gemm::reserve_scratch`).
    scratch: Vec<A>,
}

impl<A> HelperSlot<A> {
    /// A slot whose helper starts on first use.
    pub(crate) fn new() -> Self {
        HelperSlot {
            slot: Mutex::new(Slot {
                helper: None,
                scratch: Vec::new(),
            }),
        }
    }
}

impl<A> Clone for HelperSlot<A> {
    fn clone(&self) -> Self {
        HelperSlot::new()
    }
}

/// Whether a product of `m x k` by `k x n` is worth splitting.
pub(crate) fn worth_splitting(m: usize, k: usize, n: usize) -> bool {
    m.max(n) >= MIN_PARALLEL_ROWS
        && m.saturating_mul(k).saturating_mul(n) >= MIN_PARALLEL_FMAS
        && threads() > 1
}

impl<A: NdFloat> HelperSlot<A> {
    /// `c = op(a) · op(b)`: split with the helper thread if the product is large enough (see
    /// [`worth_splitting`]) and the helper is free, else on the calling thread alone. The result
    /// is the same either way.
    ///
    /// # Panics
    ///
    /// If the shapes do not fit.
    pub(crate) fn product(&self, a: Operand<A>, b: Operand<A>, c: &mut Array2<A>) {
        let mut guard = match self.slot.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            // Another thread is in one of this layer's products (concurrent `predict`s): compute
            // alone, with a scratch buffer of its own.
            Err(TryLockError::WouldBlock) => return whole(&a, &b, c, &mut Vec::new()),
        };
        let Slot { helper, scratch } = &mut *guard;
        // Sized for every product, so that the caller's buffer has room for whichever part it
        // computes (its own, the helper's, or the whole).
        gemm::reserve_scratch(scratch, a.transposed, &b.array, b.transposed);
        let (m, k) = a.view().dim();
        let n = b.view().ncols();
        if worth_splitting(m, k, n) {
            if helper.is_none() {
                *helper = Helper::spawn();
            }
            if let Some(helper) = helper.as_mut() {
                return helper.product(a, b, c, scratch);
            }
        }
        whole(&a, &b, c, scratch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::randn;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// The split product equals the single-threaded one bit for bit, for a cut by rows (C taller
    /// than wide) and by columns (C wider than tall), with transposed operands, in the kernels and
    /// in `matrixmultiply`, again and again with the same helper and buffers.
    fn split_equals_unsplit<A: NdFloat>() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let mut helper = Helper::<A>::spawn().expect("a thread can be started");
        // (m, k, n, a transposed, b transposed)
        for (m, k, n, a_t, b_t) in [
            (100, 300, 40, false, false),
            (37, 200, 130, false, true),
            (300, 64, 50, true, false),
            (90, 33, 90, true, true),
            // Between the two kernel sizes: `matrixmultiply` with AVX2, the kernels with AVX-512.
            (100, 784, 120, false, false),
            // Beyond both: `matrixmultiply`.
            (100, 784, 900, false, false),
        ] {
            let a_dim = if a_t { (k, m) } else { (m, k) };
            let b_dim = if b_t { (n, k) } else { (k, n) };
            let a = Arc::new(randn::<A, _, _>(a_dim, 1.0, &mut rng));
            let b = Arc::new(randn::<A, _, _>(b_dim, 1.0, &mut rng));
            let mut expected = Array2::zeros((m, n));
            let mut scratch = Vec::new();
            whole(
                &Operand::new(&a, a_t),
                &Operand::new(&b, b_t),
                &mut expected,
                &mut scratch,
            );
            for _ in 0..5 {
                let mut c = Array2::from_elem((m, n), A::nan());
                gemm::reserve_scratch(&mut scratch, a_t, &b, b_t);
                helper.product(
                    Operand::new(&a, a_t),
                    Operand::new(&b, b_t),
                    &mut c,
                    &mut scratch,
                );
                assert_eq!(c, expected, "{m}x{k}x{n}");
                // The helper let go of both operands.
                assert_eq!(Arc::strong_count(&a), 1);
                assert_eq!(Arc::strong_count(&b), 1);
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

    /// A miss sends 2 products to the caller alone; misses in a row double that up to 64; a
    /// shared product starts again from 2.
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

    /// A layer's helper thread stops when the layer is dropped; a clone gets its own.
    #[test]
    fn helper_slots_start_and_stop_their_threads() {
        let slot = HelperSlot::<f64>::new();
        let a = Arc::new(Array2::from_elem((64, 128), 1.0));
        let b = Arc::new(Array2::from_elem((128, 160), 0.5));
        let mut c = Array2::zeros((64, 160));
        slot.product(Operand::new(&a, false), Operand::new(&b, false), &mut c);
        assert!(c.iter().all(|&v| v == 64.0));
        let copy = slot.clone();
        assert!(copy.slot.lock().unwrap().helper.is_none());
        drop(slot);
        drop(copy);
    }
}
