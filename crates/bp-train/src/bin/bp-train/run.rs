//! A whole run: load the data, build the network, train it.

use std::path::PathBuf;

use bp_core::{Init, LayerError, LayerSpec, plan_stack};
use bp_data::{DataError, MnistOptions, check_data_dir, load_mnist};
use bp_train::model_file::{ModelElement, ModelError, ModelInfo, TrainingRecord, save_model};
use bp_train::{
    Activation, Augment, Dataset, Dtype, EpochReport, Flow, MultiLayerConfig, NamedNet, NetOptions,
    Network, Observer, Plan, Stream, TrainConfig, TrainError, TrainSummary, estimate_memory,
    iters_per_epoch, rng, train_with,
};

use crate::memory::{Limit, TooBig, check};

/// What can stop a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The data set could not be loaded; the message names the file.
    #[error(transparent)]
    Data(#[from] DataError),

    /// The data set loaded but has no samples to train on or to test with.
    #[error("the {which} set in {} holds no images", dir.display())]
    EmptySet {
        /// `"training"` or `"test"`.
        which: &'static str,
        /// The data directory.
        dir: PathBuf,
    },

    /// The layer list does not fit the data, or its sizes overflow: a usage error, like a bad
    /// flag.
    #[error("{flag}: {error}")]
    Layers {
        /// The flag that made the list: `--layers`, `--hidden` or `--classes`.
        flag: &'static str,
        /// The layer and what is wrong with it.
        error: LayerError,
    },

    /// `--epochs` times the iterations per epoch overflow (the library's
    /// [`TrainError::TooLong`], with the figures): a usage error.
    #[error("--epochs: {0}")]
    TooLong(TrainError),

    /// `--augment` moves images further than their size: a usage error.
    #[error(
        "--augment {augment}: shifts of up to {} pixels would move whole {}x{} images out of the frame",
        augment.max_shift(),
        image_shape.0,
        image_shape.1
    )]
    Augment {
        /// The augmentation asked for.
        augment: Augment,
        /// The data's images, rows by columns.
        image_shape: (usize, usize),
    },

    /// The run would need more memory than it may use: a usage error.
    #[error(transparent)]
    Memory(#[from] Box<TooBig>),

    /// Training stopped.
    #[error(transparent)]
    Train(#[from] TrainError),

    /// The model file could not be written; the message names it.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// The layers of a run's network.
#[derive(Clone, Debug, PartialEq)]
pub enum Stack {
    /// `--hidden`, `--activation`, `--dropout`, `--batch-norm`: hidden blocks of `affine`,
    /// [`batchnorm`], the activation and [`dropout`], then an `affine` layer to the data's classes.
    Hidden {
        /// The width of each hidden layer.
        sizes: Vec<usize>,
        /// The hidden activation.
        activation: Activation,
        /// The dropout ratio after each hidden activation, if any.
        dropout: Option<f64>,
        /// Batch normalisation before each hidden activation.
        batch_norm: bool,
    },
    /// `--layers`: the whole list, the last layer giving one score per class.
    Layers(Vec<LayerSpec>),
    /// `--net`: a named net's layer list.
    Named(&'static NamedNet),
}

/// The network of a run, apart from the input size and the class count, which come from the data.
#[derive(Clone, Debug, PartialEq)]
pub struct NetSpec {
    /// The layers.
    pub stack: Stack,
    /// The weight initialisation.
    pub init: Init,
    /// The weight-decay coefficient λ.
    pub weight_decay: f64,
}

impl Default for NetSpec {
    /// The book's chapter 5 net: one hidden layer of 50 Relu units, weights drawn with std 0.01.
    fn default() -> Self {
        NetSpec {
            stack: Stack::Hidden {
                sizes: vec![50],
                activation: Activation::Relu,
                dropout: None,
                batch_norm: false,
            },
            init: Init::Std(0.01),
            weight_decay: 0.0,
        }
    }
}

impl NetSpec {
    /// The layer list for data of `input_size` features and `classes` classes.
    pub fn layers(&self, input_size: usize, classes: usize) -> Vec<LayerSpec> {
        match &self.stack {
            Stack::Layers(layers) => layers.clone(),
            Stack::Named(net) => net.layers(),
            &Stack::Hidden {
                ref sizes,
                activation,
                dropout,
                batch_norm,
            } => MultiLayerConfig {
                activation,
                dropout,
                batch_norm,
                ..MultiLayerConfig::new(input_size, sizes.clone(), classes)
            }
            .layers(),
        }
    }

    /// How the weights are drawn and decayed.
    pub fn options(&self) -> NetOptions {
        NetOptions {
            init: self.init,
            weight_decay: self.weight_decay,
        }
    }
}

impl RunError {
    /// Whether the error is the command line's fault, like a bad flag (exit status 2): a layer
    /// list that does not fit the data, a run too long to count or too large for the memory.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            RunError::Layers { .. }
                | RunError::TooLong(_)
                | RunError::Augment { .. }
                | RunError::Memory(_)
        )
    }
}

/// Everything a run needs.
#[derive(Clone, Debug, PartialEq)]
pub struct RunConfig {
    /// The directory of the four MNIST-layout IDX files.
    pub data_dir: PathBuf,
    /// The most memory the loaded data set may take, in bytes (`--max-data-mib`).
    pub max_data_bytes: u64,
    /// The network.
    pub net: NetSpec,
    /// The number of classes, if the command line says it (else the largest label plus one).
    pub classes: Option<usize>,
    /// The training.
    pub train: TrainConfig,
    /// The element type.
    pub dtype: Dtype,
    /// The memory the run may use, in MiB, instead of what the system has available.
    pub max_memory_mib: Option<u64>,
    /// Where and how to save the trained model, if at all.
    pub save: Option<SaveConfig>,
}

/// Where and how [`run`] saves its model (see [`model_file`](crate::model_file)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaveConfig {
    /// The safetensors file, written atomically.
    pub path: PathBuf,
    /// Save after every epoch whose test accuracy beats all earlier ones (the model kept is that of
    /// the best epoch), instead of once after the last epoch.
    pub best: bool,
    /// With `best`: end the run after this many epochs in a row without a better test accuracy.
    pub patience: Option<usize>,
}

/// The model file a run wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct SavedModel {
    /// The file.
    pub path: PathBuf,
    /// The numbers of the epoch it holds, as stored in its metadata.
    pub record: TrainingRecord,
}

/// What was loaded, given to [`RunObserver::loaded`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataInfo {
    /// The data directory.
    pub dir: PathBuf,
    /// Training images.
    pub train_size: usize,
    /// Test images.
    pub test_size: usize,
    /// Rows and columns of each image.
    pub image_shape: (usize, usize),
    /// The number of classes (the largest label plus one).
    pub classes: usize,
}

/// An [`Observer`] that also hears what [`run`] loaded and built.
pub trait RunObserver: Observer {
    /// After the data is loaded and the network built, before training; `net` describes the
    /// network (see [`Network::describe`]).
    fn loaded(&mut self, _data: &DataInfo, _net: &str) {}
}

/// The result of [`run`].
pub struct RunOutcome {
    /// The numbers of the run.
    pub summary: TrainSummary,
    /// The model file written, if the run saved one.
    pub saved: Option<SavedModel>,
    /// Whether [`SaveConfig::patience`] ended the run before its planned length.
    pub stopped_early: bool,
}

/// Loads the data set in `cfg.data_dir` (any image size; the class count is `cfg.classes` or the
/// largest label plus one), builds the network of `cfg.net` — the book's [`TwoLayerNet`] for the
/// default — with weights drawn from [`rng`]`(seed, Stream::Init)`, and trains it. With `cfg.save`,
/// saves the model (see [`SaveConfig`]).
///
/// [`TwoLayerNet`]: bp_train::TwoLayerNet
///
/// # Errors
///
/// [`RunError::Data`] for a missing or malformed data set (naming the file; the directory is
/// checked before anything else), or one that would take more than `cfg.max_data_bytes`,
/// [`RunError::EmptySet`], [`RunError::Layers`] for a layer list that does not fit the data,
/// [`RunError::TooLong`] for more epochs than iterations can be counted, [`RunError::Memory`] for
/// a run estimated to need more memory than it may use (checked before the network is built),
/// [`RunError::Model`] if the model cannot be saved, and the errors of training.
pub fn run<A: ModelElement>(
    cfg: &RunConfig,
    observer: &mut dyn RunObserver,
) -> Result<RunOutcome, RunError> {
    check_data_dir(&cfg.data_dir)?;
    // Measured before the data is loaded: the estimate counts the data too.
    let limit = match cfg.max_memory_mib {
        Some(mib) => Some(Limit::from_mib(mib)),
        None => Limit::detect(),
    };
    let wants_images = match &cfg.net.stack {
        Stack::Layers(layers) => layers.first().is_some_and(LayerSpec::wants_images),
        Stack::Named(net) => net.layers().first().is_some_and(LayerSpec::wants_images),
        Stack::Hidden { .. } => false,
    };
    let opts = MnistOptions {
        normalize: true,
        // Augmentation moves images: the samples keep their shape (`Affine` flattens them).
        flatten: !wants_images && cfg.train.augment == Augment::None,
        one_hot_label: false,
        num_classes: cfg.classes,
        verify_checksums: false,
        max_bytes: cfg.max_data_bytes,
    };
    let mnist = load_mnist::<A>(&cfg.data_dir, &opts)?;
    let t_train = mnist.t_train.to_index();
    let t_test = mnist.t_test.to_index();
    let data = DataInfo {
        dir: cfg.data_dir.clone(),
        train_size: t_train.len(),
        test_size: t_test.len(),
        image_shape: mnist.image_shape,
        classes: mnist.num_classes,
    };
    for (which, len) in [("training", data.train_size), ("test", data.test_size)] {
        if len == 0 {
            return Err(RunError::EmptySet {
                which,
                dir: cfg.data_dir.clone(),
            });
        }
    }
    let (rows, cols) = data.image_shape;
    if cfg.train.augment.max_shift() >= rows.min(cols) {
        return Err(RunError::Augment {
            augment: cfg.train.augment,
            image_shape: data.image_shape,
        });
    }
    let input_shape = if wants_images {
        vec![1, rows, cols]
    } else {
        vec![rows * cols]
    };
    let layers = cfg.net.layers(rows * cols, data.classes);
    let layer_error = |error: LayerError| RunError::Layers {
        flag: match cfg.net.stack {
            Stack::Layers(_) => "--layers",
            Stack::Named(_) => "--net",
            Stack::Hidden { .. } if error.position == layers.len() && cfg.classes.is_some() => {
                "--classes"
            }
            Stack::Hidden { .. } => "--hidden",
        },
        error,
    };
    // Everything that can be checked before the network and its buffers are allocated: the
    // run's length, the layers' sizes, and the memory they all need.
    let ipe = iters_per_epoch(data.train_size, cfg.train.batch_size);
    let planned = cfg.train.length.iters(ipe).map_err(RunError::TooLong)?;
    let plan = plan_stack(&layers, &input_shape).map_err(layer_error)?;
    let estimate = estimate_memory(&plan, A::DTYPE, &cfg.train, data.train_size, data.test_size);
    check(
        estimate,
        limit,
        cfg.train.batch_size,
        cfg.train.optimizer,
        A::DTYPE.name(),
    )?;
    let mut net = Network::<A>::new(
        &input_shape,
        layers.clone(),
        cfg.net.options(),
        &mut rng(cfg.train.seed, Stream::Init),
    )
    .map_err(layer_error)?;
    if net.classes() != data.classes {
        let last = layers.len();
        return Err(RunError::Layers {
            flag: match cfg.net.stack {
                Stack::Layers(_) => "--layers",
                Stack::Named(_) => "--net",
                Stack::Hidden { .. } => "--classes",
            },
            error: LayerError {
                position: last,
                text: layers[last - 1].to_string(),
                reason: format!(
                    "the last layer gives {} scores, but the data in {} has {} classes",
                    net.classes(),
                    cfg.data_dir.display(),
                    data.classes,
                ),
            },
        });
    }
    observer.loaded(&data, &net.describe());
    let train_set = Dataset::new(mnist.x_train.view(), &t_train);
    let test_set = Dataset::new(mnist.x_test.view(), &t_test);
    let mut observer = Forward(observer);
    let mut keeper = Keeper {
        save: cfg.save.as_ref(),
        info: ModelInfo::new(data.image_shape),
        best: None,
        stale: 0,
        stopped: false,
    };
    let summary = train_with(
        &mut net,
        train_set,
        test_set,
        &cfg.train,
        &mut observer,
        |n: &Network<A>, r: &EpochReport| keeper.after_epoch(n, r),
    )?;
    let stopped_early = keeper.stopped && summary.iters < planned;
    let saved = keeper.finish(&net, &summary)?;
    Ok(RunOutcome {
        summary,
        saved,
        stopped_early,
    })
}

/// Saves the model of a run: after each best epoch so far, or once at the end.
struct Keeper<'a> {
    save: Option<&'a SaveConfig>,
    info: ModelInfo,
    /// The best epoch so far, with `best` saving.
    best: Option<TrainingRecord>,
    /// Epochs since the best one.
    stale: usize,
    /// Whether the patience ran out.
    stopped: bool,
}

impl Keeper<'_> {
    fn after_epoch<A: ModelElement>(
        &mut self,
        net: &Network<A>,
        report: &EpochReport,
    ) -> Result<Flow, RunError> {
        let Some(save) = self.save.filter(|s| s.best) else {
            return Ok(Flow::Continue);
        };
        if self.best.is_none_or(|b| report.test_acc > b.test_acc) {
            let record = TrainingRecord::from(report);
            let info = ModelInfo {
                training: Some(record),
                ..self.info.clone()
            };
            save_model(&save.path, net, &info)?;
            self.best = Some(record);
            self.stale = 0;
        } else {
            self.stale += 1;
            if save.patience.is_some_and(|p| self.stale >= p) {
                self.stopped = true;
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Continue)
    }

    /// Saves the last epoch's model unless the best ones were saved; returns the file written.
    fn finish<A: ModelElement>(
        self,
        net: &Network<A>,
        summary: &TrainSummary,
    ) -> Result<Option<SavedModel>, RunError> {
        let Some(save) = self.save else {
            return Ok(None);
        };
        let record = if save.best {
            self.best
                .expect("every run has an epoch, and the first is the best so far")
        } else {
            let last = summary.epochs.last().expect("every run has an epoch");
            let record = TrainingRecord::from(last);
            let info = ModelInfo {
                training: Some(record),
                ..self.info
            };
            save_model(&save.path, net, &info)?;
            record
        };
        Ok(Some(SavedModel {
            path: save.path.clone(),
            record,
        }))
    }
}

/// Passes the training hooks of a [`RunObserver`] on.
struct Forward<'a>(&'a mut dyn RunObserver);

impl Observer for Forward<'_> {
    fn start(&mut self, plan: &Plan) {
        self.0.start(plan);
    }
    fn epoch_start(&mut self, epoch: usize, steps: usize) {
        self.0.epoch_start(epoch, steps);
    }
    fn step(&mut self, done: usize) {
        self.0.step(done);
    }
    fn epoch_end(&mut self, report: &EpochReport) {
        self.0.epoch_end(report);
    }
}

/// The per-epoch line of the command, e.g.
/// `epoch  1 | loss 0.3412 | train_acc 0.9051 | test_acc 0.9069 | 0.2 s` (the seconds of the
/// epoch's training steps).
pub fn epoch_line(r: &EpochReport) -> String {
    format!(
        "epoch {:>2} | loss {:.4} | train_acc {:.4} | test_acc {:.4} | {:.1} s",
        r.epoch, r.loss, r.train_acc, r.test_acc, r.seconds
    )
}

/// The last line of the command, e.g.
/// `final test_acc=0.9704 train_acc=0.9789 train_seconds=1.23 iters=10000`.
pub fn final_line(s: &TrainSummary) -> String {
    format!(
        "final test_acc={:.4} train_acc={:.4} train_seconds={:.2} iters={}",
        s.test_acc, s.train_acc, s.train_seconds, s.iters
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_the_documented_format() {
        let r = EpochReport {
            epoch: 1,
            iter: 600,
            loss: 0.34123,
            train_acc: 0.90512,
            test_acc: 0.9069,
            seconds: 0.2049,
            train_seconds: 0.2049,
        };
        assert_eq!(
            epoch_line(&r),
            "epoch  1 | loss 0.3412 | train_acc 0.9051 | test_acc 0.9069 | 0.2 s"
        );
        let s = TrainSummary {
            epochs: vec![r],
            iters: 10000,
            train_seconds: 1.234,
            train_acc: 0.9789,
            test_acc: 0.9704,
        };
        assert_eq!(
            final_line(&s),
            "final test_acc=0.9704 train_acc=0.9789 train_seconds=1.23 iters=10000"
        );
    }

    #[test]
    fn the_default_spec_is_the_two_layer_net() {
        let spec = NetSpec::default();
        let layers: Vec<String> = spec
            .layers(784, 10)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(layers, ["affine 50", "relu", "affine 10"]);
        let net = Network::<f32>::new(
            &[784],
            spec.layers(784, 10),
            spec.options(),
            &mut rng(0, Stream::Init),
        )
        .unwrap();
        assert_eq!(net.describe(), "TwoLayerNet 784-50-10, relu, init std 0.01");
    }
}
