//! The training loop.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use std::io;

use bp_core::{Compact, Init};
use bp_loss::Targets;
use ndarray::{Array2, ArrayView, ArrayView2, ArrayViewD, Dimension, IxDyn, NdFloat};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;

use crate::augment::{Augment, Shift, draw_shifts, shift_batch};
use crate::network::Network;
use crate::optimizer::OptimizerKind;
use crate::schedule::Schedule;

/// What can stop a training run: a diverging loss, a run too long to count, or a metrics file
/// that cannot be written.
///
/// Programming errors (a net whose input size does not fit the data, a zero batch size passed to
/// the library) panic instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// The loss became NaN or infinite, or stayed near its ceiling (see [`train`]): the run
    /// stopped at that iteration. The message says what most likely caused it
    /// ([`Divergence`]); [`TrainError::message_naming`] words it with other names for the
    /// settings (a command line's flags).
    #[error("{}", self.message_naming(&SettingNames::WORDS))]
    Diverged {
        /// The iteration (from 1) at which the run was stopped.
        iter: usize,
        /// The epoch (from 1) it belongs to.
        epoch: usize,
        /// That iteration's data loss.
        loss: f64,
        /// The learning rate of that iteration.
        lr: f64,
        /// What most likely made it diverge.
        cause: Divergence,
    },

    /// A run of [`Length::Epochs`] whose iterations, epochs times iterations per epoch, are more
    /// than a `usize` counts.
    #[error(
        "{epochs} epochs of {iters_per_epoch} iterations each are more iterations than this \
         machine can count (at most {})",
        usize::MAX
    )]
    TooLong {
        /// The epochs asked for.
        epochs: usize,
        /// The iterations of each.
        iters_per_epoch: usize,
    },

    /// A batch of `batch_size` samples holds more bytes than one allocation can: the batch
    /// buffer, `batch_size` times the sample's elements, cannot be counted.
    #[error(
        "batches of {batch_size} samples of {sample_size} elements are more than this machine \
         can address"
    )]
    BatchTooLarge {
        /// The batch size.
        batch_size: usize,
        /// The elements of one sample.
        sample_size: usize,
    },

    /// The metrics CSV file could not be created or written: it names a directory, a FIFO or
    /// another special file, a file the user may not write, or a directory that is missing or
    /// takes no new file (see [`check_output`](crate::files::check_output)), or a write failed.
    #[error("cannot write the metrics file {}", path.display())]
    Metrics {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

/// What most likely made a run diverge, judged from the step at which it was stopped (see
/// [`TrainError::Diverged`]).
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Divergence {
    /// The loss was not finite at the first step, before any update: the initial weights are too
    /// large for the element type (their scores, or their squares, overflow).
    InitialWeights {
        /// How the weights were drawn.
        init: Init,
    },
    /// λ is too large: the weight-decay term `½ λ Σ ‖W‖²` is not finite although the sum of
    /// squares is, or each update scales the weights by `1 − lr·λ`, below −1, so that they grow
    /// whatever the data (with SGD and Momentum).
    WeightDecay {
        /// λ.
        lambda: f64,
        /// The term at the step the run was stopped.
        penalty: f64,
        /// The base learning rate.
        lr: f64,
    },
    /// The updates made the loss NaN or infinite, or left it stuck near its ceiling: the learning
    /// rate is too large.
    LearningRate,
}

/// How a [`TrainError::Diverged`] message names the settings it blames: in words
/// ([`SettingNames::WORDS`], its `Display`), or as a command line's flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SettingNames {
    /// The learning rate.
    pub lr: &'static str,
    /// The weight decay λ.
    pub weight_decay: &'static str,
    /// The standard deviation of [`Init::Std`].
    pub init_std: &'static str,
    /// The initialisation.
    pub init: &'static str,
}

impl SettingNames {
    /// The settings in words: "learning rate", "weight decay", "init std", "init".
    pub const WORDS: SettingNames = SettingNames {
        lr: "learning rate",
        weight_decay: "weight decay",
        init_std: "init std",
        init: "init",
    };
}

impl TrainError {
    /// The error's message, naming the settings as `names` says. Only
    /// [`Diverged`](TrainError::Diverged) names settings; the other errors give their `Display`.
    ///
    /// ```
    /// use bp_train::{Divergence, SettingNames, TrainError};
    ///
    /// let err = TrainError::Diverged {
    ///     iter: 2,
    ///     epoch: 1,
    ///     loss: f64::NAN,
    ///     lr: 0.1,
    ///     cause: Divergence::WeightDecay { lambda: 1e30, penalty: f64::INFINITY, lr: 0.1 },
    /// };
    /// assert_eq!(
    ///     err.to_string(),
    ///     "training diverged at iteration 2 (epoch 1): the loss is NaN: the weight-decay term is \
    ///      infinite: weight decay 1e30 is too large"
    /// );
    /// let flags = SettingNames { weight_decay: "--weight-decay", ..SettingNames::WORDS };
    /// assert!(err.message_naming(&flags).ends_with(": --weight-decay 1e30 is too large"));
    /// ```
    pub fn message_naming(&self, names: &SettingNames) -> String {
        let TrainError::Diverged {
            iter,
            epoch,
            loss,
            lr,
            cause,
        } = *self
        else {
            return self.to_string();
        };
        let what = if loss.is_finite() {
            format!(
                "the loss has stayed above {SATURATED_LOSS:.2} for {SATURATED_STEPS} iterations in \
                 a row (now {loss:.4}; its ceiling is 16.12: the net is confidently wrong)"
            )
        } else {
            format!("the loss is {loss}")
        };
        let why = match cause {
            Divergence::LearningRate => {
                format!("; try a smaller {} (it was {})", names.lr, Compact(lr))
            }
            Divergence::WeightDecay {
                lambda,
                penalty,
                lr: base,
            } => {
                let decay = format!("{} {}", names.weight_decay, Compact(lambda));
                if penalty.is_finite() {
                    format!(
                        ": {decay} is too large for {} {} (each update scales the weights by \
                         1 - lr·λ = {})",
                        names.lr,
                        Compact(base),
                        Compact(1.0 - base * lambda)
                    )
                } else {
                    let term = if penalty.is_nan() { "NaN" } else { "infinite" };
                    format!(": the weight-decay term is {term}: {decay} is too large")
                }
            }
            Divergence::InitialWeights { init } => {
                let init = match init {
                    Init::Std(std) => format!("{} {}", names.init_std, Compact(std)),
                    Init::He => format!("{} he", names.init),
                    Init::Xavier => format!("{} xavier", names.init),
                };
                format!(
                    " at the first step, before any update: the initial weights are too large \
                     ({init})"
                )
            }
        };
        format!("training diverged at iteration {iter} (epoch {epoch}): {what}{why}")
    }
}

/// What most likely made the loss of `net` diverge at a step. At the first step (`first`) no
/// update has been made, so the learning rate cannot be the cause; `lr` is the base learning rate.
fn diagnose<A: NdFloat>(net: &mut Network<A>, first: bool, lr: f64) -> Divergence {
    let penalty = net.penalty().to_f64().unwrap_or(f64::NAN);
    let lambda = net.options().weight_decay;
    // The sum of squares of the decaying weights in the element type, as the penalty sums it.
    let mut sum = A::zero();
    net.visit_params(&mut |p| {
        if p.kind.decays() {
            p.value.for_each(|&w| sum += w * w);
        }
    });
    let decay = Divergence::WeightDecay {
        lambda,
        penalty,
        lr,
    };
    if !penalty.is_finite() && sum.is_finite() {
        decay
    } else if first {
        Divergence::InitialWeights {
            init: net.options().init,
        }
    } else if lr * lambda > 2.0 {
        decay
    } else {
        Divergence::LearningRate
    }
}

/// How each iteration's batch is drawn from the training set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Sampling {
    /// The book's `np.random.choice(train_size, batch_size)`: every batch drawn uniformly with
    /// replacement, independently of the others.
    #[default]
    Book,
    /// Shuffled epochs: each epoch walks a new random permutation of the training set, batch by
    /// batch, so every sample is seen once per epoch (the last `train_size % batch_size` samples of
    /// the permutation are left out of that epoch).
    Shuffle,
}

impl Sampling {
    /// Every sampling, in the order the command line lists them.
    pub const ALL: [Sampling; 2] = [Sampling::Book, Sampling::Shuffle];

    /// The lower-case name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Sampling::Book => "book",
            Sampling::Shuffle => "shuffle",
        }
    }
}

/// How long to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Length {
    /// A number of iterations (the book's `iters_num`); the last epoch may be partial.
    Iters(usize),
    /// A number of epochs of [`iters_per_epoch`] iterations.
    Epochs(usize),
}

impl Length {
    /// The iterations of the run, with `iters_per_epoch` iterations per epoch.
    ///
    /// # Errors
    ///
    /// [`TrainError::TooLong`] if epochs times iterations per epoch overflow `usize`.
    ///
    /// ```
    /// use bp_train::Length;
    ///
    /// assert_eq!(Length::Epochs(3).iters(600).unwrap(), 1800);
    /// assert_eq!(Length::Iters(usize::MAX).iters(600).unwrap(), usize::MAX);
    /// assert!(Length::Epochs(usize::MAX).iters(2).is_err());
    /// ```
    pub fn iters(self, iters_per_epoch: usize) -> Result<usize, TrainError> {
        match self {
            Length::Iters(i) => Ok(i),
            Length::Epochs(e) => e.checked_mul(iters_per_epoch).ok_or(TrainError::TooLong {
                epochs: e,
                iters_per_epoch,
            }),
        }
    }
}

/// Everything about a run but the network and the data.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// How long to train.
    pub length: Length,
    /// Samples per batch.
    pub batch_size: usize,
    /// The base learning rate.
    pub lr: f64,
    /// The update rule.
    pub optimizer: OptimizerKind,
    /// How the learning rate changes over the run.
    pub schedule: Schedule,
    /// How batches are drawn.
    pub sampling: Sampling,
    /// The seed of every random choice of the run (weights, batches, dropout masks).
    pub seed: u64,
    /// A CSV file to write one line of metrics per epoch to.
    pub metrics: Option<PathBuf>,
    /// How training samples are changed before each step (see [`Augment`]); evaluation sees them
    /// as they are.
    pub augment: Augment,
}

impl Default for TrainConfig {
    /// The book's chapter 5 run: 10000 iterations of batch 100, SGD with lr 0.1, book sampling,
    /// seed 0.
    fn default() -> Self {
        TrainConfig {
            length: Length::Iters(10_000),
            batch_size: 100,
            lr: 0.1,
            optimizer: OptimizerKind::Sgd,
            schedule: Schedule::Constant,
            sampling: Sampling::Book,
            seed: 0,
            metrics: None,
            augment: Augment::None,
        }
    }
}

/// The book's `iter_per_epoch = max(train_size / batch_size, 1)`.
///
/// ```
/// assert_eq!(bp_train::iters_per_epoch(60000, 100), 600);
/// assert_eq!(bp_train::iters_per_epoch(50, 100), 1);
/// ```
pub fn iters_per_epoch(train_size: usize, batch_size: usize) -> usize {
    (train_size / batch_size.max(1)).max(1)
}

/// The independent random streams of a run, each a [`Xoshiro256PlusPlus`] seeded from the run's seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Weight initialisation, then the dropout layers' seeds: exactly `seed_from_u64(seed)`.
    Init,
    /// Batch sampling.
    Sampling,
    /// The shifts of [`Augment::Shift`].
    Augment,
}

/// The generator of one random stream of a run with the given seed.
pub fn rng(seed: u64, stream: Stream) -> Xoshiro256PlusPlus {
    let k = match stream {
        Stream::Init => 0,
        Stream::Sampling => 1,
        Stream::Augment => 2,
    };
    // seed_from_u64 runs the seed through SplitMix64, so nearby seeds give unrelated streams.
    Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(k))
}

/// A data set: N samples of any shape, (N, ...), such as flat rows (N, 784) or images (N, 1, 28,
/// 28), and one class index per sample.
#[derive(Clone, Debug)]
pub struct Dataset<'a, A> {
    /// The inputs, samples along the first axis.
    pub x: ArrayViewD<'a, A>,
    /// The class of each sample.
    pub t: &'a [usize],
}

impl<'a, A> Dataset<'a, A> {
    /// A data set of the given inputs (samples along the first axis) and labels.
    ///
    /// # Panics
    ///
    /// If `x` has fewer than two axes or there is not one label per sample.
    #[track_caller]
    pub fn new<D: Dimension>(x: ArrayView<'a, A, D>, t: &'a [usize]) -> Self {
        assert!(
            x.ndim() >= 2 && x.shape()[0] == t.len(),
            "Dataset::new: x has shape {:?} but there are {} labels",
            x.shape(),
            t.len()
        );
        Dataset { x: x.into_dyn(), t }
    }

    /// The number of elements of one sample.
    pub fn sample_size(&self) -> usize {
        self.x.shape()[1..].iter().product()
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.t.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.t.is_empty()
    }
}

/// What a run will do, given to [`Observer::start`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Training samples.
    pub train_size: usize,
    /// Test samples.
    pub test_size: usize,
    /// Samples per batch.
    pub batch_size: usize,
    /// Iterations in all.
    pub iters: usize,
    /// Iterations per (full) epoch.
    pub iters_per_epoch: usize,
    /// Epochs, the last of which may be partial.
    pub epochs: usize,
}

/// The numbers of one epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochReport {
    /// The epoch, from 1.
    pub epoch: usize,
    /// Iterations done so far, this epoch's included.
    pub iter: usize,
    /// The mean of this epoch's training-step losses (as `gradient` returned them).
    pub loss: f64,
    /// Accuracy on the whole training set at the end of the epoch.
    pub train_acc: f64,
    /// Accuracy on the test set at the end of the epoch.
    pub test_acc: f64,
    /// Seconds spent in this epoch's training steps (evaluation excluded).
    pub seconds: f64,
    /// Seconds spent in training steps so far.
    pub train_seconds: f64,
}

/// The result of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainSummary {
    /// One report per epoch.
    pub epochs: Vec<EpochReport>,
    /// Iterations done.
    pub iters: usize,
    /// Seconds spent in training steps (evaluation excluded).
    pub train_seconds: f64,
    /// Training-set accuracy at the end.
    pub train_acc: f64,
    /// Test-set accuracy at the end.
    pub test_acc: f64,
}

/// Hooks through which a caller follows a run (to print it, draw a progress bar, ...). Every
/// method does nothing by default. An observer is `Send`: the run's steps, and so its calls,
/// happen on a thread of bp-core's pool (see [`bp_core::install`]).
pub trait Observer: Send {
    /// Before the first step.
    fn start(&mut self, _plan: &Plan) {}
    /// Before the first step of an epoch that will run `steps` iterations.
    fn epoch_start(&mut self, _epoch: usize, _steps: usize) {}
    /// After each training step; `done` counts the steps of the current epoch. Keep it cheap: it
    /// is timed as part of training.
    fn step(&mut self, _done: usize) {}
    /// After each epoch's evaluation.
    fn epoch_end(&mut self, _report: &EpochReport) {}
}

/// An observer that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Observer for Silent {}

/// Draws the sample indices of each batch.
struct Sampler {
    sampling: Sampling,
    rng: Xoshiro256PlusPlus,
    /// The current permutation (shuffle sampling) and the position in it.
    order: Vec<usize>,
    cursor: usize,
    n: usize,
}

impl Sampler {
    fn new(sampling: Sampling, n: usize, rng: Xoshiro256PlusPlus) -> Self {
        Sampler {
            sampling,
            rng,
            order: match sampling {
                Sampling::Book => Vec::new(),
                Sampling::Shuffle => (0..n).collect(),
            },
            cursor: 0,
            n,
        }
    }

    fn start_epoch(&mut self) {
        if self.sampling == Sampling::Shuffle {
            self.order.shuffle(&mut self.rng);
            self.cursor = 0;
        }
    }

    fn fill(&mut self, indices: &mut [usize]) {
        match self.sampling {
            Sampling::Book => {
                for i in indices {
                    *i = self.rng.random_range(0..self.n);
                }
            }
            Sampling::Shuffle => {
                for i in indices {
                    // Only a batch larger than the training set wraps within an epoch.
                    if self.cursor == self.n {
                        self.order.shuffle(&mut self.rng);
                        self.cursor = 0;
                    }
                    *i = self.order[self.cursor];
                    self.cursor += 1;
                }
            }
        }
    }
}

/// Writes the `--metrics` CSV file.
struct MetricsCsv {
    path: PathBuf,
    out: BufWriter<File>,
}

impl MetricsCsv {
    const HEADER: &'static str = "epoch,iter,loss,train_acc,test_acc,seconds";

    fn create(path: &Path) -> Result<Self, TrainError> {
        let err = |source| TrainError::Metrics {
            path: path.to_path_buf(),
            source,
        };
        let mut out = BufWriter::new(crate::files::create_in_place(path).map_err(err)?);
        writeln!(out, "{}", Self::HEADER)
            .and_then(|()| out.flush())
            .map_err(err)?;
        Ok(MetricsCsv {
            path: path.to_path_buf(),
            out,
        })
    }

    fn write(&mut self, r: &EpochReport) -> Result<(), TrainError> {
        writeln!(
            self.out,
            "{},{},{},{},{},{:.6}",
            r.epoch, r.iter, r.loss, r.train_acc, r.test_acc, r.train_seconds
        )
        .and_then(|()| self.out.flush())
        .map_err(|source| TrainError::Metrics {
            path: self.path.clone(),
            source,
        })
    }
}

/// Half the largest value of the book's cross-entropy, `-ln(1e-7) / 2 ≈ 8.06`: a mean batch loss
/// above it means the net is confidently wrong on most of the batch. See [`train`].
pub const SATURATED_LOSS: f64 = 8.059_047_825_479_16;

/// How many iterations in a row the loss may stay above [`SATURATED_LOSS`] before [`train`] calls
/// the run divergent.
pub const SATURATED_STEPS: usize = 50;

/// Trains `net` on `train`, evaluating on the whole training and test sets after each epoch.
///
/// Each iteration draws a batch (see [`Sampling`]), gathers it into a buffer reused from step to step
/// (the first layer hands its storage back through [`Network::gradient_reusing`]), runs one forward
/// and backward pass with [`Network::gradient`]'s semantics, and lets the optimizer update every
/// parameter with the scheduled learning rate. The loss of each step is the one `gradient` returned;
/// nothing runs a second forward pass to log it. Only the training steps are timed.
///
/// A diverging run stops at once with [`TrainError::Diverged`]: when a step's data loss (the loss
/// minus [`Network::penalty`]) is NaN or infinite, or when it has stayed above [`SATURATED_LOSS`]
/// for [`SATURATED_STEPS`] iterations in a row. The second test is needed because the book's
/// cross-entropy, `-ln(y + 1e-7)`, never reaches infinity: with a far too large learning rate the
/// weights blow up, the softmax saturates, and the loss sticks near its ceiling of 16.1 instead of
/// becoming NaN. A run that only jumps there for a few steps and recovers (AdaGrad's or Adam's
/// first steps with a large rate) goes on.
///
/// The run is a function of `cfg.seed` (for the batches; the caller seeds the weights, see [`rng`]):
/// the same seed, network and data give the same numbers.
///
/// # Errors
///
/// [`TrainError::Diverged`], [`TrainError::TooLong`] for a run of more epochs than iterations
/// can be counted, [`TrainError::BatchTooLarge`] for a batch no allocation can hold, and
/// [`TrainError::Metrics`] if the metrics file cannot be written.
///
/// # Memory
///
/// The training loop allocates its buffers before the first step: batch buffers of
/// `cfg.batch_size` samples and the optimizer's state. Epoch reports are kept as epochs end, so a
/// long run of many epochs holds only the reports of the epochs done.
/// [`estimate_memory`](crate::estimate_memory) says what a run will hold; check it before
/// training with sizes that come from a user.
///
/// # Panics
///
/// If `cfg.batch_size` or the length is 0, a data set is empty, or the data does not fit the
/// network (the layers panic with the shapes).
///
/// # Example
///
/// ```
/// use bp_train::{Dataset, Length, Silent, TrainConfig, TwoLayerNet, train};
/// use ndarray::Array2;
///
/// // Two classes: is the first feature larger than the second?
/// let x = Array2::from_shape_fn((200, 2), |(i, j)| ((i * 7 + j * 13) % 17) as f32 / 17.0);
/// let t: Vec<usize> = x.rows().into_iter().map(|r| usize::from(r[0] > r[1])).collect();
/// let data = Dataset::new(x.view(), &t);
/// let mut net = TwoLayerNet::<f32>::new(2, 16, 2, 0.5, &mut bp_train::rng(0, bp_train::Stream::Init));
/// let cfg = TrainConfig { length: Length::Epochs(30), batch_size: 20, lr: 0.5, ..TrainConfig::default() };
/// let summary = train(&mut net, data.clone(), data, &cfg, &mut Silent)?;
/// assert_eq!(summary.iters, 300);
/// assert!(summary.test_acc > 0.9, "{}", summary.test_acc);
/// # Ok::<(), bp_train::TrainError>(())
/// ```
pub fn train<A: NdFloat>(
    net: &mut Network<A>,
    train: Dataset<'_, A>,
    test: Dataset<'_, A>,
    cfg: &TrainConfig,
    observer: &mut dyn Observer,
) -> Result<TrainSummary, TrainError> {
    train_with(net, train, test, cfg, observer, |_, _| Ok(Flow::Continue))
}

/// What [`train_with`] does after an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Go on with the next epoch.
    Continue,
    /// End the run after this epoch.
    Stop,
}

/// [`train`], with a hook called after each epoch's evaluation (after the observer's
/// [`epoch_end`](Observer::epoch_end)) with the network and the epoch's report. The hook can keep
/// the network (save it, say) and can end the run early with [`Flow::Stop`]: the summary then holds
/// the epochs that ran, and its `iters` the iterations done.
///
/// # Errors
///
/// As [`train`] (converted to the hook's error type `E`), and the hook's errors, which end the
/// run.
///
/// # Panics
///
/// As [`train`].
pub fn train_with<A, E>(
    net: &mut Network<A>,
    train: Dataset<'_, A>,
    test: Dataset<'_, A>,
    cfg: &TrainConfig,
    observer: &mut dyn Observer,
    after_epoch: impl FnMut(&Network<A>, &EpochReport) -> Result<Flow, E> + Send,
) -> Result<TrainSummary, E>
where
    A: NdFloat,
    E: From<TrainError> + Send,
{
    // On a thread of the pool, so that the work each step shares goes to the pool's other
    // threads directly (handing work to a pool from outside it allocates).
    bp_core::install(move || run_epochs(net, train, test, cfg, observer, after_epoch))
}

/// [`train_with`] on the calling thread.
fn run_epochs<A, E>(
    net: &mut Network<A>,
    train: Dataset<'_, A>,
    test: Dataset<'_, A>,
    cfg: &TrainConfig,
    observer: &mut dyn Observer,
    mut after_epoch: impl FnMut(&Network<A>, &EpochReport) -> Result<Flow, E>,
) -> Result<TrainSummary, E>
where
    A: NdFloat,
    E: From<TrainError>,
{
    assert!(cfg.batch_size > 0, "train: the batch size must be positive");
    assert!(
        !train.is_empty() && !test.is_empty(),
        "train: the training set ({}) and the test set ({}) must not be empty",
        train.len(),
        test.len()
    );
    let n = train.len();
    let features = train.sample_size();
    assert!(
        features == net.input_size() && test.sample_size() == features,
        "train: the network takes samples of shape {:?}, but the training set holds samples of \
         shape {:?} and the test set of {:?}",
        net.input_shape(),
        &train.x.shape()[1..],
        &test.x.shape()[1..]
    );
    // The batch buffer, and the batch's indices and labels, must be countable in bytes.
    let bytes = |count: Option<usize>, size: usize| {
        count
            .and_then(|c| c.checked_mul(size))
            .is_some_and(|b| isize::try_from(b).is_ok())
    };
    if !bytes(cfg.batch_size.checked_mul(features), size_of::<A>())
        || !bytes(Some(cfg.batch_size), size_of::<usize>())
    {
        return Err(TrainError::BatchTooLarge {
            batch_size: cfg.batch_size,
            sample_size: features,
        }
        .into());
    }
    // The training set as rows, for the gather (a view unless the data is not in standard layout).
    let rows = train.x.as_standard_layout();
    let rows = rows
        .view()
        .into_shape_with_order((n, features))
        .expect("a standard-layout array reshapes to rows");
    // The images augmentation moves: the last two axes of a sample, and the planes before them.
    let image = match cfg.augment {
        Augment::None => None,
        Augment::Shift(_) => {
            let shape = &train.x.shape()[1..];
            assert!(
                shape.len() >= 2,
                "train: {} moves images, but the training set holds samples of shape {shape:?}",
                cfg.augment
            );
            let (h, w) = (shape[shape.len() - 2], shape[shape.len() - 1]);
            Some((features / (h * w).max(1), (h, w)))
        }
    };
    let mut shift_rng = rng(cfg.seed, Stream::Augment);
    let mut shifts = vec![Shift::default(); if image.is_some() { cfg.batch_size } else { 0 }];
    let mut batch_shape = vec![cfg.batch_size];
    batch_shape.extend(net.input_shape());
    let batch_size = cfg.batch_size;
    let ipe = iters_per_epoch(n, batch_size);
    let iters = cfg.length.iters(ipe)?;
    assert!(iters > 0, "train: the run must have at least one iteration");
    let epochs = iters.div_ceil(ipe);
    observer.start(&Plan {
        train_size: n,
        test_size: test.len(),
        batch_size,
        iters,
        iters_per_epoch: ipe,
        epochs,
    });

    let mut metrics = cfg.metrics.as_deref().map(MetricsCsv::create).transpose()?;
    let mut optimizer = cfg.optimizer.build::<A>();
    let mut sampler = Sampler::new(cfg.sampling, n, rng(cfg.seed, Stream::Sampling));
    let mut indices = vec![0usize; batch_size];
    let mut labels = vec![0usize; batch_size];
    // Batch buffers taken in turn (see `SHARED_BATCH_BUFFERS`), all allocated before the first
    // step. A network that does not hand its input's storage back gets a new buffer each step.
    let buffers = if bp_core::threads() > 1 {
        SHARED_BATCH_BUFFERS
    } else {
        1
    };
    let mut batches: VecDeque<Array2<A>> = (0..buffers)
        .map(|_| Array2::zeros((batch_size, features)))
        .collect();
    // Grown as epochs end: a run of many short epochs must not reserve their reports up front.
    let mut reports = Vec::new();
    let mut iter = 0;
    let mut train_seconds = 0.0;
    let mut saturated = 0;

    for epoch in 1..=epochs {
        let steps = ipe.min(iters - iter);
        observer.epoch_start(epoch, steps);
        sampler.start_epoch();
        let mut loss_sum = 0.0;
        let started = Instant::now();
        for done in 1..=steps {
            sampler.fill(&mut indices);
            let mut x = match batches.pop_front() {
                Some(b) if b.dim() == (batch_size, features) => b,
                _ => Array2::zeros((batch_size, features)),
            };
            gather(rows, &indices, &mut x);
            if let Some((planes, hw)) = image {
                draw_shifts(cfg.augment.max_shift(), &mut shift_rng, &mut shifts);
                let batch = x
                    .as_slice_mut()
                    .expect("a batch buffer is in standard layout");
                shift_batch(batch, planes, hw, &shifts);
            }
            for (label, &i) in labels.iter_mut().zip(&indices) {
                *label = train.t[i];
            }
            let x = x
                .into_shape_with_order(IxDyn(&batch_shape))
                .expect("a batch buffer is in standard layout");
            let (loss, storage) = net.gradient_reusing(x, Targets::Index(&labels));
            if let Ok(b) = storage.into_shape_with_order((batch_size, features)) {
                batches.push_back(b);
            }
            let lr = cfg.schedule.lr(cfg.lr, iter, iters);
            let loss = loss.to_f64().unwrap_or(f64::NAN);
            let data_loss = loss - net.penalty().to_f64().unwrap_or(0.0);
            saturated = if data_loss > SATURATED_LOSS {
                saturated + 1
            } else {
                0
            };
            if !data_loss.is_finite() || saturated == SATURATED_STEPS {
                let cause = diagnose(net, iter == 0, cfg.lr);
                return Err(TrainError::Diverged {
                    iter: iter + 1,
                    epoch,
                    loss: data_loss,
                    lr,
                    cause,
                }
                .into());
            }
            loss_sum += loss;
            let lr = A::from(lr).expect("a finite f64 converts");
            optimizer.begin_step();
            let mut index = 0;
            net.visit_params(&mut |p| {
                optimizer.update_param(index, lr, p);
                index += 1;
            });
            iter += 1;
            observer.step(done);
        }
        let seconds = started.elapsed().as_secs_f64();
        train_seconds += seconds;
        let report = EpochReport {
            epoch,
            iter,
            loss: loss_sum / steps as f64,
            train_acc: net.accuracy(train.x.view(), train.t),
            test_acc: net.accuracy(test.x.view(), test.t),
            seconds,
            train_seconds,
        };
        if let Some(m) = &mut metrics {
            m.write(&report)?;
        }
        observer.epoch_end(&report);
        reports.push(report);
        if after_epoch(net, &report)? == Flow::Stop {
            break;
        }
    }
    let last = *reports.last().expect("there is at least one epoch");
    Ok(TrainSummary {
        epochs: reports,
        iters: iter,
        train_seconds,
        train_acc: last.train_acc,
        test_acc: last.test_acc,
    })
}

/// Batch buffers the training loop takes in turn when work is shared over threads
/// (`bp_core::threads() > 1`). Other threads gather parts of each batch and read parts of it in
/// `dW1 = xᵀ · dout`, so the buffer just used sits in several cores' caches, and gathering into
/// it again would first have to take its lines back from the other cores; a buffer last used 8
/// steps ago is mostly gone from them. With one thread a single buffer stays in the cache and is
/// faster. (The figures are in docs/performance.md, "Two threads".)
pub(crate) const SHARED_BATCH_BUFFERS: usize = 8;

/// Rows gathered together: [`gather`] copies a slice of each of these many rows before the next
/// slice, so that that many rows' memory loads are in flight at once.
const GATHER_ROWS: usize = 8;

/// The bytes of a row [`gather`] copies at a time: two cache lines.
const GATHER_BYTES: usize = 128;

/// The fewest elements of a part of a batch gathered by a thread of its own (see [`gather`]).
const SHARED_GATHER_ELEMENTS: usize = 1 << 14;

/// Copies row `indices[r]` of `x` into row `r` of `out`.
///
/// The rows of a batch are scattered over a data set far larger than the caches, so the copy waits
/// on memory. Copying slices of a few rows in turn keeps several rows' loads in flight. A large
/// batch is cut into parts of whole groups of rows, one per thread of bp-core's pool (see
/// [`bp_core::threads`]) while each has at least [`SHARED_GATHER_ELEMENTS`] elements, which
/// multiplies the loads in flight again (figures in docs/performance.md, "The batch gather").
fn gather<A: Copy + Send + Sync>(x: ArrayView2<'_, A>, indices: &[usize], out: &mut Array2<A>) {
    let cols = x.ncols();
    debug_assert_eq!(out.dim(), (indices.len(), cols));
    let (Some(src), Some(dst)) = (x.as_slice(), out.as_slice_mut()) else {
        for (mut row, &i) in out.rows_mut().into_iter().zip(indices) {
            row.assign(&x.row(i));
        }
        return;
    };
    if cols == 0 {
        return;
    }
    let parts = bp_core::threads()
        .min(dst.len() / SHARED_GATHER_ELEMENTS)
        .max(1);
    if parts == 1 {
        return gather_rows(src, cols, indices, dst);
    }
    // As many rows in each part as a matrix product's cut gives a thread, so that each thread's
    // part of `x · W` mostly reads rows it copied.
    let rows = indices.len().div_ceil(parts);
    bp_core::install(|| {
        dst.par_chunks_mut(rows * cols)
            .zip(indices.par_chunks(rows))
            .for_each(|(dst, indices)| gather_rows(src, cols, indices, dst));
    });
}

/// [`gather`] for row-major `src` and `dst`, rows `cols` long, on the calling thread.
fn gather_rows<A: Copy>(src: &[A], cols: usize, indices: &[usize], dst: &mut [A]) {
    let width = (GATHER_BYTES / size_of::<A>()).max(1);
    for (rows, dst) in indices
        .chunks(GATHER_ROWS)
        .zip(dst.chunks_mut(GATHER_ROWS * cols))
    {
        for start in (0..cols).step_by(width) {
            let end = (start + width).min(cols);
            for (&i, dst) in rows.iter().zip(dst.chunks_exact_mut(cols)) {
                dst[start..end].copy_from_slice(&src[i * cols + start..i * cols + end]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row lands where it belongs, for contiguous and strided inputs, rows that do not fill
    /// a slice or a group, repeated rows and an empty row.
    #[test]
    fn gather_copies_the_chosen_rows() {
        let x = Array2::from_shape_fn((23, 77), |(i, j)| (i * 1000 + j) as f32);
        let strided = x.slice(ndarray::s![.., ..;2]);
        let empty = Array2::<f32>::zeros((5, 0));
        for view in [x.view(), strided, x.slice(ndarray::s![3.., ..])] {
            for batch in [1, 7, 8, 9, 20] {
                let indices: Vec<usize> = (0..batch).map(|r| (r * 7 + 3) % view.nrows()).collect();
                let mut out = Array2::from_elem((batch, view.ncols()), -1.0);
                gather(view, &indices, &mut out);
                for (r, &i) in indices.iter().enumerate() {
                    assert_eq!(out.row(r), view.row(i), "batch {batch}, row {r}");
                }
            }
        }
        let mut out = Array2::<f32>::zeros((2, 0));
        gather(empty.view(), &[4, 0], &mut out);
        assert_eq!(out.dim(), (2, 0));
        // Batches large enough to be gathered in parts, and one just below.
        let x = Array2::from_shape_fn((300, 400), |(i, j)| (i * 1000 + j) as f32);
        for batch in [81, 82, 100, 173] {
            let indices: Vec<usize> = (0..batch).map(|r| (r * 37 + 5) % 300).collect();
            let mut out = Array2::from_elem((batch, 400), -1.0);
            gather(x.view(), &indices, &mut out);
            assert_eq!(out.len() >= 2 * SHARED_GATHER_ELEMENTS, batch > 81);
            for (r, &i) in indices.iter().enumerate() {
                assert_eq!(out.row(r), x.row(i), "batch {batch}, row {r}");
            }
        }
    }

    #[test]
    fn book_sampling_draws_with_replacement_in_range() {
        let mut s = Sampler::new(Sampling::Book, 5, rng(1, Stream::Sampling));
        let mut idx = [0; 100];
        s.start_epoch();
        s.fill(&mut idx);
        assert!(idx.iter().all(|&i| i < 5));
        // 100 draws from 5: repeats are certain.
        let mut sorted = idx.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 5);
    }

    #[test]
    fn shuffle_sampling_sees_every_sample_once_per_epoch() {
        let mut s = Sampler::new(Sampling::Shuffle, 10, rng(2, Stream::Sampling));
        let mut previous = Vec::new();
        for _ in 0..3 {
            s.start_epoch();
            let mut seen = Vec::new();
            for _ in 0..iters_per_epoch(10, 3) {
                let mut idx = [0; 3];
                s.fill(&mut idx);
                seen.extend(idx);
            }
            assert_eq!(seen.len(), 9);
            let mut sorted = seen.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), 9, "{seen:?}");
            assert_ne!(seen, previous);
            previous = seen;
        }
        // A batch larger than the set wraps into a new permutation.
        let mut s = Sampler::new(Sampling::Shuffle, 4, rng(3, Stream::Sampling));
        s.start_epoch();
        let mut idx = [0; 6];
        s.fill(&mut idx);
        let mut first = idx[..4].to_vec();
        first.sort_unstable();
        assert_eq!(first, [0, 1, 2, 3]);
    }

    /// Flat rows and images of the same pixels, into a network of flat or image-shaped samples,
    /// train to the same bits: the batch is gathered as the network's samples.
    #[test]
    fn samples_of_any_shape_train_alike() {
        use bp_core::parse_layers;
        let x = Array2::from_shape_fn((60, 4), |(i, j)| ((i * 7 + j * 3) % 11) as f64 / 11.0);
        let t: Vec<usize> = (0..60)
            .map(|i| usize::from(x[[i, 0]] > x[[i, 3]]))
            .collect();
        let images = x.clone().into_shape_with_order((60, 1, 2, 2)).unwrap();
        let cfg = TrainConfig {
            length: Length::Epochs(3),
            batch_size: 10,
            lr: 0.5,
            ..TrainConfig::default()
        };
        let run = |input: &[usize], data: ArrayViewD<'_, f64>| {
            let specs = parse_layers("affine 5, relu, affine 2").unwrap();
            let options = crate::NetOptions::default();
            let mut net = Network::new(input, specs, options, &mut rng(1, Stream::Init)).unwrap();
            let set = Dataset::new(data, &t);
            let s = train(&mut net, set.clone(), set, &cfg, &mut Silent).unwrap();
            let losses: Vec<f64> = s.epochs.iter().map(|e| e.loss).collect();
            (losses, s.train_acc, net.predict(x.clone().into_dyn()))
        };
        let flat = run(&[4], x.view().into_dyn());
        assert_eq!(run(&[4], images.view().into_dyn()), flat);
        assert_eq!(run(&[1, 2, 2], x.view().into_dyn()), flat);
        assert_eq!(run(&[1, 2, 2], images.view().into_dyn()), flat);
        assert!(flat.0[2] < flat.0[0], "{:?}", flat.0);
    }

    /// Augmentation changes what the network trains on: the same seed gives the same run, and a
    /// step trains on the sampled images moved by the shifts of the augmentation stream.
    #[test]
    fn augmentation_shifts_the_training_batches_only() {
        use bp_core::parse_layers;
        // 3x3 images, one bright pixel at a position that gives the class (left or right half).
        let n = 90;
        let x = Array2::from_shape_fn((n, 9), |(i, j)| f64::from(u8::from(j == i % 9)));
        let t: Vec<usize> = (0..n).map(|i| usize::from(i % 3 == 2)).collect();
        let images = x.view().into_shape_with_order((n, 1, 3, 3)).unwrap();
        let run = |augment: Augment| {
            let cfg = TrainConfig {
                length: Length::Epochs(4),
                batch_size: 10,
                lr: 0.5,
                augment,
                ..TrainConfig::default()
            };
            let specs = parse_layers("affine 8, relu, affine 2").unwrap();
            let options = crate::NetOptions::default();
            let mut net = Network::new(&[9], specs, options, &mut rng(1, Stream::Init)).unwrap();
            let set = Dataset::new(images.into_dyn(), &t);
            let s = train(&mut net, set.clone(), set, &cfg, &mut Silent).unwrap();
            s.epochs.iter().map(|e| e.loss).collect::<Vec<f64>>()
        };
        let plain = run(Augment::None);
        let shifted = run(Augment::Shift(1));
        assert_eq!(run(Augment::Shift(1)), shifted);
        assert_ne!(plain, shifted);
        // One step by hand: the batch the sampler draws, each image moved by the shift drawn
        // from the augmentation stream, one gradient and an SGD update, give the trained bits.
        let cfg = TrainConfig {
            length: Length::Iters(1),
            batch_size: 10,
            lr: 0.5,
            augment: Augment::Shift(1),
            ..TrainConfig::default()
        };
        let net = || {
            let specs = parse_layers("affine 8, relu, affine 2").unwrap();
            Network::new(
                &[9],
                specs,
                crate::NetOptions::default(),
                &mut rng(1, Stream::Init),
            )
            .unwrap()
        };
        let mut trained = net();
        let set = Dataset::new(images.into_dyn(), &t);
        train(&mut trained, set.clone(), set, &cfg, &mut Silent).unwrap();
        let mut sampler = Sampler::new(Sampling::Book, n, rng(0, Stream::Sampling));
        sampler.start_epoch();
        let mut indices = [0; 10];
        sampler.fill(&mut indices);
        let mut shifts = [Shift::default(); 10];
        draw_shifts(1, &mut rng(0, Stream::Augment), &mut shifts);
        let mut batch = Array2::zeros((10, 9));
        for (r, (&i, s)) in indices.iter().zip(&shifts).enumerate() {
            for (y, x) in (0..3).flat_map(|y| (0..3).map(move |x| (y, x))) {
                let (sy, sx) = (y - s.dy, x - s.dx);
                if (0..3).contains(&sy) && (0..3).contains(&sx) {
                    batch[[r, (y * 3 + x) as usize]] = x_at(&images, i, sy, sx);
                }
            }
        }
        assert!(shifts.iter().any(|s| *s != Shift::default()), "{shifts:?}");
        let labels: Vec<usize> = indices.iter().map(|&i| t[i]).collect();
        let mut by_hand = net();
        by_hand.gradient(batch.into_dyn(), Targets::Index(&labels));
        by_hand.visit_params(&mut |mut p| {
            let step = p.grad.mapv(|g| g * 0.5);
            p.value -= &step;
        });
        let probe = x.clone().into_dyn();
        assert_eq!(trained.predict(probe.clone()), by_hand.predict(probe));
    }

    fn x_at(images: &ndarray::ArrayView4<'_, f64>, i: usize, y: isize, x: isize) -> f64 {
        images[[i, 0, y as usize, x as usize]]
    }

    /// A small problem for the divergence and length tests: 40 samples of 4 features, 2 classes.
    fn toy() -> (Array2<f32>, Vec<usize>) {
        let x = Array2::from_shape_fn((40, 4), |(i, j)| ((i * 7 + j * 3) % 11) as f32 / 11.0);
        let t = (0..40)
            .map(|i| usize::from(x[[i, 0]] > x[[i, 3]]))
            .collect();
        (x, t)
    }

    fn toy_run(options: crate::NetOptions, cfg: &TrainConfig) -> Result<TrainSummary, TrainError> {
        let (x, t) = toy();
        let specs = bp_core::parse_layers("affine 8, relu, affine 2").unwrap();
        let mut net = Network::new(&[4], specs, options, &mut rng(0, Stream::Init)).unwrap();
        let set = Dataset::new(x.view(), &t);
        train(&mut net, set.clone(), set, cfg, &mut Silent)
    }

    fn diverged(result: Result<TrainSummary, TrainError>) -> (usize, Divergence, String) {
        match result {
            Err(err @ TrainError::Diverged { iter, cause, .. }) => (iter, cause, err.to_string()),
            other => panic!("the run did not diverge: {other:?}"),
        }
    }

    #[test]
    fn weights_too_large_to_start_with_are_blamed_at_the_first_step() {
        let cfg = TrainConfig {
            length: Length::Iters(10),
            batch_size: 10,
            ..TrainConfig::default()
        };
        let options = crate::NetOptions {
            init: Init::Std(1e30),
            weight_decay: 0.0,
        };
        let (iter, cause, message) = diverged(toy_run(options, &cfg));
        assert_eq!(iter, 1);
        assert_eq!(
            cause,
            Divergence::InitialWeights {
                init: Init::Std(1e30)
            }
        );
        assert_eq!(
            message,
            "training diverged at iteration 1 (epoch 1): the loss is NaN at the first step, \
             before any update: the initial weights are too large (init std 1e30)"
        );
        // Their squares overflow too: the weight-decay term is infinite, but not for λ's sake.
        let (_, cause, _) = diverged(toy_run(
            crate::NetOptions {
                weight_decay: 1e-4,
                ..options
            },
            &cfg,
        ));
        assert_eq!(
            cause,
            Divergence::InitialWeights {
                init: Init::Std(1e30)
            }
        );
    }

    #[test]
    fn a_weight_decay_too_large_is_blamed_not_the_learning_rate() {
        let cfg = TrainConfig {
            length: Length::Iters(10),
            batch_size: 10,
            ..TrainConfig::default()
        };
        // Its term overflows f32 at once: ½ · 1e38 · Σ W², with 48 weights of std 1.
        let at_once = crate::NetOptions {
            init: Init::Std(1.0),
            weight_decay: 1e38,
        };
        let (iter, cause, message) = diverged(toy_run(at_once, &cfg));
        assert_eq!(iter, 1);
        assert!(
            matches!(cause, Divergence::WeightDecay { lambda, penalty, .. }
                if lambda == 1e38 && penalty == f64::INFINITY),
            "{cause:?}"
        );
        assert!(
            message.ends_with(
                "the loss is NaN: the weight-decay term is infinite: weight decay 1e38 is too large"
            ),
            "{message}"
        );
        // A term that fits, but an update that multiplies the weights by 1 - 0.1 · 1e30.
        let growing = crate::NetOptions {
            init: Init::Std(0.01),
            weight_decay: 1e30,
        };
        let (iter, cause, message) = diverged(toy_run(growing, &cfg));
        assert!(iter > 1, "{message}");
        assert!(
            matches!(cause, Divergence::WeightDecay { lambda, .. } if lambda == 1e30),
            "{cause:?}"
        );
        assert!(
            message.contains("weight decay 1e30 is too large"),
            "{message}"
        );
        assert!(!message.contains("learning rate (it was"), "{message}");
    }

    #[test]
    fn a_learning_rate_too_large_is_blamed_and_written_briefly() {
        let cfg = TrainConfig {
            length: Length::Iters(200),
            batch_size: 10,
            lr: 1e300,
            ..TrainConfig::default()
        };
        let (iter, cause, message) = diverged(toy_run(crate::NetOptions::default(), &cfg));
        assert!(iter > 1, "{message}");
        assert_eq!(cause, Divergence::LearningRate);
        assert!(
            message.ends_with("; try a smaller learning rate (it was 1e300)"),
            "{message}"
        );
        let flags = SettingNames {
            lr: "--lr",
            ..SettingNames::WORDS
        };
        let err = toy_run(crate::NetOptions::default(), &cfg).unwrap_err();
        assert!(
            err.message_naming(&flags)
                .ends_with("; try a smaller --lr (it was 1e300)"),
            "{err}"
        );
    }

    #[test]
    fn runs_too_long_to_count_are_refused_and_long_ones_reserve_nothing() {
        // 40 samples in batches of 10: 4 iterations per epoch.
        let cfg = TrainConfig {
            length: Length::Epochs(usize::MAX / 2),
            batch_size: 10,
            ..TrainConfig::default()
        };
        let err = toy_run(crate::NetOptions::default(), &cfg).unwrap_err();
        assert!(
            matches!(err, TrainError::TooLong { epochs, iters_per_epoch: 4 } if epochs == usize::MAX / 2),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "{} epochs of 4 iterations each are more iterations than this machine can count \
                 (at most {})",
                usize::MAX / 2,
                usize::MAX
            )
        );
        // A batch no allocation can hold is refused before anything is allocated.
        let huge = TrainConfig {
            length: Length::Iters(1),
            batch_size: usize::MAX / 2,
            ..cfg.clone()
        };
        let err = toy_run(crate::NetOptions::default(), &huge).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "batches of {} samples of 4 elements are more than this machine can address",
                usize::MAX / 2
            )
        );
        // The longest runs that can be counted start, and keep a report per epoch done; the hook
        // stops them after three epochs.
        let (x, t) = toy();
        for length in [Length::Iters(usize::MAX), Length::Epochs(usize::MAX / 4)] {
            let specs = bp_core::parse_layers("affine 8, relu, affine 2").unwrap();
            let options = crate::NetOptions::default();
            let mut net = Network::new(&[4], specs, options, &mut rng(0, Stream::Init)).unwrap();
            let set = Dataset::new(x.view(), &t);
            let cfg = TrainConfig {
                length,
                ..cfg.clone()
            };
            let summary = train_with(&mut net, set.clone(), set, &cfg, &mut Silent, |_, r| {
                Ok::<_, TrainError>(if r.epoch == 3 {
                    Flow::Stop
                } else {
                    Flow::Continue
                })
            })
            .unwrap();
            assert_eq!(summary.epochs.len(), 3);
            assert_eq!(summary.iters, 12);
        }
    }

    #[test]
    fn saturated_loss_is_half_the_ceiling() {
        assert!((SATURATED_LOSS - -(bp_loss::DELTA.ln()) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn streams_differ_and_init_is_the_plain_seed() {
        use rand::Rng;
        let mut a = rng(7, Stream::Init);
        let mut b = rng(7, Stream::Sampling);
        let mut plain = Xoshiro256PlusPlus::seed_from_u64(7);
        let x = a.next_u64();
        assert_eq!(x, plain.next_u64());
        assert_ne!(x, b.next_u64());
    }
}
