//! Work over the samples of a batch, cut into parts of a fixed number of samples, shared over
//! bp-core's rayon pool ([`install`], then halved with `rayon::join` down to single parts).
//!
//! The parts do not depend on the number of threads, and each is computed by one thread with the
//! same operations wherever it runs; a reduction over the batch (a convolution's `dW`) sums the
//! parts' results afterwards, in their order. So results are the same, bit for bit, on one thread
//! or many.

use crate::parallel::{install, threads};

/// Calls `f(state, input, output)` for each part: the `i`-th part of `state` (`s_len` elements),
/// of `input` (`in_len`) and of `output` (`out_len`), the last parts possibly shorter. The parts
/// are halved again and again with `rayon::join` on the pool of [`threads`] threads, so that every
/// thread takes parts (all on the calling thread if [`threads`] is 1). Inside the pool, as a
/// training loop runs, the joins push onto the thread's own queue and allocate nothing.
///
/// # Panics
///
/// If the three do not cut into the same number of parts, or a length is 0.
#[track_caller]
pub(crate) fn for_each_part<S, I, O, F>(
    (state, s_len): (&mut [S], usize),
    (input, in_len): (&[I], usize),
    (output, out_len): (&mut [O], usize),
    f: F,
) where
    S: Send,
    I: Sync,
    O: Send,
    F: Fn(&mut [S], &[I], &mut [O]) + Sync + Send,
{
    let parts = state.len().div_ceil(s_len);
    assert!(
        input.len().div_ceil(in_len) == parts && output.len().div_ceil(out_len) == parts,
        "parts of {s_len} of {} states, {in_len} of {} inputs and {out_len} of {} outputs differ \
         in number",
        state.len(),
        input.len(),
        output.len()
    );
    install(|| run_parts(state, s_len, input, in_len, output, out_len, parts, &f));
}

/// The `parts` parts of the three slices, halved between threads down to single parts.
#[allow(clippy::too_many_arguments)]
fn run_parts<S, I, O, F>(
    state: &mut [S],
    s_len: usize,
    input: &[I],
    in_len: usize,
    output: &mut [O],
    out_len: usize,
    parts: usize,
    f: &F,
) where
    S: Send,
    I: Sync,
    O: Send,
    F: Fn(&mut [S], &[I], &mut [O]) + Sync + Send,
{
    if parts < 2 || threads() < 2 {
        state
            .chunks_mut(s_len)
            .zip(input.chunks(in_len))
            .zip(output.chunks_mut(out_len))
            .for_each(|((s, i), o)| f(s, i, o));
        return;
    }
    let half = parts / 2;
    let (s0, s1) = state.split_at_mut(half * s_len);
    let (i0, i1) = input.split_at(half * in_len);
    let (o0, o1) = output.split_at_mut(half * out_len);
    rayon::join(
        || run_parts(s0, s_len, i0, in_len, o0, out_len, half, f),
        || run_parts(s1, s_len, i1, in_len, o1, out_len, parts - half, f),
    );
}
