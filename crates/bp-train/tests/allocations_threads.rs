//! At the book's shapes (784-50-10, batch 100) the two large matrix products of a step are shared
//! with the first layer's helper thread. A steady step must still allocate nothing but the packing
//! buffer that `matrixmultiply` allocates inside each call: the helper's output buffers, the
//! operands it shares and the thread itself are all set up in the first step and reused after.
//!
//! A counting global allocator counts the allocations of every thread between consecutive steps of
//! the real training loop. This file holds one test so that no other test thread allocates while it
//! counts.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bp_train::{Dataset, Length, Observer, Stream, TrainConfig, TwoLayerNet, rng, train};
use ndarray::Array2;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Records the allocation counter after every step, into storage reserved up front.
struct Counter {
    at_step: Vec<usize>,
}

impl Observer for Counter {
    fn step(&mut self, _done: usize) {
        self.at_step.push(ALLOCATIONS.load(Ordering::Relaxed));
    }
}

/// The matrix products of one step of the book's net, each one `matrixmultiply` call with one
/// packing buffer, or two when it is shared with the helper thread: `x·W1` (shared), `h·W2`,
/// `dW2 = hᵀ·dout`, `dh = dout·W2ᵀ`, `dW1 = xᵀ·dh` (shared).
const PACKING_BUFFERS_PER_STEP: usize = 2 + 1 + 1 + 1 + 2;

#[test]
fn steady_steps_with_a_helper_thread_allocate_only_inside_matrix_products() {
    bp_core::set_threads(2);
    let n = 3000;
    let x = Array2::from_shape_fn((n, 784), |(i, j)| ((i * 7 + j * 13) % 17) as f32 / 17.0);
    let t: Vec<usize> = (0..n).map(|i| i % 10).collect();
    let data = Dataset::new(x.view(), &t);
    let mut net = TwoLayerNet::<f32>::new(784, 50, 10, 0.01, &mut rng(0, Stream::Init));
    // One epoch of 30 steps: no evaluation between the steps counted.
    let cfg = TrainConfig {
        length: Length::Iters(30),
        ..TrainConfig::default()
    };
    let mut counter = Counter {
        at_step: Vec::with_capacity(100),
    };
    train(&mut net, data, data, &cfg, &mut counter).expect("the run does not diverge");
    let most = counter.at_step[1..]
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .expect("at least three steps");
    assert!(
        most <= PACKING_BUFFERS_PER_STEP,
        "{most} allocations in a steady step: {:?}",
        counter.at_step
    );
}
