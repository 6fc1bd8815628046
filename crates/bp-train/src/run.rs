//! A whole run: load the data, build the network, train it.

use std::fmt::Write as _;
use std::path::PathBuf;

use bp_core::Init;
use bp_data::{MnistOptions, load_mnist};
use ndarray::{Ix2, NdFloat};

use crate::error::TrainError;
use crate::model_file::{ModelElement, ModelInfo, NetRef, TrainingRecord, save_model};
use crate::multi_layer::{Activation, MultiLayerConfig, MultiLayerNet};
use crate::network::Network;
use crate::train::{
    Dataset, EpochReport, Flow, Length, Observer, Stream, TrainConfig, TrainSummary,
    iters_per_epoch, rng, train_with,
};
use crate::two_layer::TwoLayerNet;

/// The element type to train in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Dtype {
    /// `f32`: faster, and accurate enough for training.
    #[default]
    F32,
    /// `f64`: the book's NumPy float64.
    F64,
}

impl Dtype {
    /// The lower-case name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F64 => "f64",
        }
    }
}

/// The network of a run, apart from the input and output sizes, which come from the data.
#[derive(Clone, Debug, PartialEq)]
pub struct NetSpec {
    /// The width of each hidden layer.
    pub hidden_sizes: Vec<usize>,
    /// The hidden activation.
    pub activation: Activation,
    /// The weight initialisation.
    pub init: Init,
    /// The dropout ratio after each hidden activation, if any.
    pub dropout: Option<f64>,
    /// Batch normalisation before each hidden activation.
    pub batch_norm: bool,
    /// The weight-decay coefficient λ.
    pub weight_decay: f64,
}

impl Default for NetSpec {
    /// The book's chapter 5 net: one hidden layer of 50 Relu units, weights drawn with std 0.01.
    fn default() -> Self {
        NetSpec {
            hidden_sizes: vec![50],
            activation: Activation::Relu,
            init: Init::Std(0.01),
            dropout: None,
            batch_norm: false,
            weight_decay: 0.0,
        }
    }
}

impl NetSpec {
    /// The full configuration for the given input and output sizes.
    pub fn config(&self, input_size: usize, output_size: usize) -> MultiLayerConfig {
        MultiLayerConfig {
            input_size,
            hidden_sizes: self.hidden_sizes.clone(),
            output_size,
            activation: self.activation,
            init: self.init,
            dropout: self.dropout,
            batch_norm: self.batch_norm,
            weight_decay: self.weight_decay,
        }
    }
}

/// Everything a run needs.
#[derive(Clone, Debug, PartialEq)]
pub struct RunConfig {
    /// The directory of the four MNIST-layout IDX files.
    pub data_dir: PathBuf,
    /// The network.
    pub net: NetSpec,
    /// The training.
    pub train: TrainConfig,
    /// The element type.
    pub dtype: Dtype,
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
    /// network (see [`describe`]).
    fn loaded(&mut self, _data: &DataInfo, _net: &str) {}
}

impl RunObserver for crate::train::Silent {}

/// The trained network of a run.
#[derive(Clone, Debug)]
pub enum TrainedNet<A> {
    /// The book's two-layer net (the default run).
    TwoLayer(Box<TwoLayerNet<A>>),
    /// Any other architecture.
    MultiLayer(Box<MultiLayerNet<A>>),
}

impl<A: NdFloat> TrainedNet<A> {
    /// The network, to predict with.
    pub fn network(&self) -> &dyn Network<A> {
        match self {
            TrainedNet::TwoLayer(n) => &**n,
            TrainedNet::MultiLayer(n) => &**n,
        }
    }

    /// The network, mutably.
    pub fn network_mut(&mut self) -> &mut dyn Network<A> {
        match self {
            TrainedNet::TwoLayer(n) => &mut **n,
            TrainedNet::MultiLayer(n) => &mut **n,
        }
    }
}

/// The result of [`run`].
#[derive(Clone, Debug)]
pub struct RunOutcome<A> {
    /// What was loaded.
    pub data: DataInfo,
    /// The trained network.
    pub net: TrainedNet<A>,
    /// The numbers of the run.
    pub summary: TrainSummary,
    /// The model file written, if the run saved one.
    pub saved: Option<SavedModel>,
    /// Whether [`SaveConfig::patience`] ended the run before its planned length.
    pub stopped_early: bool,
}

/// A one-line description of a network: its class, sizes and options, such as
/// `TwoLayerNet 784-50-10, relu, init std 0.01`.
///
/// ```
/// use bp_core::Init;
/// use bp_train::{MultiLayerConfig, describe};
///
/// let config = MultiLayerConfig { init: Init::He, dropout: Some(0.2), ..MultiLayerConfig::new(784, vec![100, 100], 10) };
/// assert_eq!(describe(&config), "MultiLayerNet 784-100-100-10, relu, init he, dropout 0.2");
/// ```
pub fn describe(config: &MultiLayerConfig) -> String {
    let sizes: Vec<String> = config.sizes().iter().map(usize::to_string).collect();
    let class = if config.is_two_layer_net() {
        "TwoLayerNet"
    } else {
        "MultiLayerNet"
    };
    let mut s = format!("{class} {}, {}", sizes.join("-"), config.activation.name());
    match config.init {
        Init::Std(std) => write!(s, ", init std {std}"),
        Init::He => write!(s, ", init he"),
        Init::Xavier => write!(s, ", init xavier"),
    }
    .expect("writing to a String cannot fail");
    if config.batch_norm {
        s.push_str(", batch norm");
    }
    if let Some(ratio) = config.dropout {
        write!(s, ", dropout {ratio}").expect("writing to a String cannot fail");
    }
    if config.weight_decay > 0.0 {
        write!(s, ", weight decay {}", config.weight_decay)
            .expect("writing to a String cannot fail");
    }
    s
}

/// Loads the data set in `cfg.data_dir` (any image size; the class count is the largest label
/// plus one), builds the network — the book's [`TwoLayerNet`] when the spec is exactly that, else a
/// [`MultiLayerNet`] — with weights drawn from [`rng`]`(seed, Stream::Init)`, and trains it. With
/// `cfg.save`, saves the model (see [`SaveConfig`]).
///
/// # Errors
///
/// [`TrainError::Data`] for a missing or malformed data set (naming the file),
/// [`TrainError::EmptySet`], [`TrainError::Model`] if the model cannot be saved, and the errors of
/// [`train`](crate::train()).
///
/// # Panics
///
/// If the spec holds a zero size, a dropout ratio outside `[0, 1)` or a negative weight decay, or the
/// training config a zero batch size or length (the command line refuses all of these).
pub fn run<A: ModelElement + 'static>(
    cfg: &RunConfig,
    observer: &mut dyn RunObserver,
) -> Result<RunOutcome<A>, TrainError> {
    let opts = MnistOptions {
        normalize: true,
        flatten: true,
        one_hot_label: false,
        num_classes: None,
        verify_checksums: false,
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
            return Err(TrainError::EmptySet {
                which,
                dir: cfg.data_dir.clone(),
            });
        }
    }
    let x_train = mnist
        .x_train
        .into_dimensionality::<Ix2>()
        .expect("flattened images are (N, rows * cols)");
    let x_test = mnist
        .x_test
        .into_dimensionality::<Ix2>()
        .expect("flattened images are (N, rows * cols)");
    let config = cfg.net.config(x_train.ncols(), data.classes);
    let mut init = rng(cfg.train.seed, Stream::Init);
    let mut net = match (config.is_two_layer_net(), config.init) {
        (true, Init::Std(std)) => TrainedNet::TwoLayer(Box::new(TwoLayerNet::new(
            config.input_size,
            config.hidden_sizes[0],
            config.output_size,
            std,
            &mut init,
        ))),
        _ => TrainedNet::MultiLayer(Box::new(MultiLayerNet::new(config.clone(), &mut init))),
    };
    observer.loaded(&data, &describe(&config));
    let train_set = Dataset::new(x_train.view(), &t_train);
    let test_set = Dataset::new(x_test.view(), &t_test);
    let mut observer = Forward(observer);
    let mut keeper = Keeper {
        save: cfg.save.as_ref(),
        info: ModelInfo::new(config, data.image_shape),
        best: None,
        stale: 0,
        stopped: false,
    };
    let summary = match &mut net {
        TrainedNet::TwoLayer(n) => train_with(
            &mut **n,
            train_set,
            test_set,
            &cfg.train,
            &mut observer,
            &mut |n, r| keeper.after_epoch(NetRef::TwoLayer(n), r),
        ),
        TrainedNet::MultiLayer(n) => train_with(
            &mut **n,
            train_set,
            test_set,
            &cfg.train,
            &mut observer,
            &mut |n, r| keeper.after_epoch(NetRef::MultiLayer(n), r),
        ),
    }?;
    let planned = match cfg.train.length {
        Length::Iters(i) => i,
        Length::Epochs(e) => {
            e.saturating_mul(iters_per_epoch(data.train_size, cfg.train.batch_size))
        }
    };
    let stopped_early = keeper.stopped && summary.iters < planned;
    let saved = keeper.finish((&net).into(), &summary)?;
    Ok(RunOutcome {
        data,
        net,
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
        net: NetRef<'_, A>,
        report: &EpochReport,
    ) -> Result<Flow, TrainError> {
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
        net: NetRef<'_, A>,
        summary: &TrainSummary,
    ) -> Result<Option<SavedModel>, TrainError> {
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
    fn start(&mut self, plan: &crate::train::Plan) {
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
        let config = NetSpec::default().config(784, 10);
        assert!(config.is_two_layer_net());
        assert_eq!(
            describe(&config),
            "TwoLayerNet 784-50-10, relu, init std 0.01"
        );
    }
}
