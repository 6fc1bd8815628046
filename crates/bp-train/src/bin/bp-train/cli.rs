//! The command line of `bp-train`: its flags, their checks, and the [`RunConfig`] they make.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bp_core::{Init, LAYER_WORDS, LayerSpec, parse_layers};
use bp_train::{
    Activation, Augment, Dtype, Length, NAMED_NETS, NamedNet, OptimizerKind, Sampling, Schedule,
    TrainConfig,
};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::image::Fit;
use crate::run::{NetSpec, RunConfig, SaveConfig, Stack};

/// The default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "datasets/mnist";

/// The default `--max-data-mib`: the loader's default limit, 1 GiB, which holds MNIST 2.2 times
/// over as f64 (464 MiB) and refuses a small gzip'd file declaring gigabytes.
pub const DEFAULT_MAX_DATA_MIB: u64 = bp_data::MnistOptions::DEFAULT_MAX_BYTES >> 20;

/// The weight initialisation, as chosen on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, ValueEnum)]
pub enum InitKind {
    /// A fixed standard deviation, `--weight-init-std` (the book's 0.01).
    #[default]
    Std,
    /// He: `sqrt(2 / fan_in)`, for Relu.
    He,
    /// Xavier: `sqrt(1 / fan_in)`, for Sigmoid.
    Xavier,
}

/// Train a network by backpropagation on MNIST (or any data set in its IDX layout), as in chapters
/// 5 and 6 of "Deep Learning from Scratch". With no flags: the book's TwoLayerNet 784-50-10, SGD with
/// lr 0.1, batch 100, 10000 iterations. --layers stacks any layers; --save keeps the model; the eval
/// and predict commands use it.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "bp-train",
    version,
    max_term_width = 100,
    args_conflicts_with_subcommands = true,
    after_help = layer_help()
)]
pub struct Cli {
    /// A command that uses a saved model; without one, bp-train trains
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Directory holding train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz],
    /// t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]; any image size and class count
    /// [default: datasets/mnist]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// The most memory the data set may take once loaded, in MiB: its images and labels as
    /// --dtype, counted from the files' headers before anything is read
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_DATA_MIB, value_parser = mib,
          allow_negative_numbers = true)]
    pub max_data_mib: u64,

    /// Training iterations (the book's iters_num) [default: 10000]
    #[arg(long, value_name = "N", value_parser = positive_usize, allow_negative_numbers = true,
          conflicts_with = "epochs")]
    pub iters: Option<usize>,

    /// Training epochs of max(train_size / batch_size, 1) iterations each, instead of --iters
    #[arg(long, value_name = "N", value_parser = positive_usize, allow_negative_numbers = true)]
    pub epochs: Option<usize>,

    /// Samples per batch
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = positive_usize,
          allow_negative_numbers = true)]
    pub batch_size: usize,

    /// Learning rate [default: 0.1 for sgd, 0.01 for momentum and adagrad, 0.001 for adam]
    #[arg(long, value_name = "F", value_parser = positive_f64, allow_hyphen_values = true)]
    pub lr: Option<f64>,

    /// The network as a layer list, first to last, comma-separated: "affine 100, relu, dropout 0.3,
    /// affine 10" (the layer words are listed below). The input size comes from the data, and the
    /// last layer must give one score per class. Instead of --hidden, --activation, --batch-norm
    /// and --dropout, which are its short form
    #[arg(long, value_name = "LIST", value_parser = parse_layer_list, allow_hyphen_values = true,
          conflicts_with_all = ["hidden", "activation", "batch_norm", "dropout"])]
    pub layers: Option<LayerList>,

    /// A network by name, with its training settings as defaults (any flag given overrides them):
    /// simple-convnet (the book's SimpleConvNet: Adam lr 0.001, weights 0.01·randn, batch 100, 20
    /// epochs) or deep-convnet (DeepConvNet: He initialisation, Adam lr 0.001, batch 100, 20
    /// epochs). Instead of --layers and its short form
    #[arg(long, value_name = "NAME", value_parser = named_net(),
          conflicts_with_all = ["layers", "hidden", "activation", "batch_norm", "dropout"])]
    pub net: Option<&'static NamedNet>,

    /// Hidden layer sizes, comma-separated: 50 is the book's TwoLayerNet, 256,128 two hidden layers
    #[arg(long, value_name = "SIZES", default_value = "50", value_parser = parse_hidden,
          allow_negative_numbers = true)]
    pub hidden: HiddenSizes,

    /// Hidden activation
    #[arg(long, default_value = "relu", value_parser = choice(&Activation::ALL, Activation::name))]
    pub activation: Activation,

    /// Update rule
    #[arg(long, default_value = "sgd",
          value_parser = choice(&OptimizerKind::ALL, OptimizerKind::name))]
    pub optimizer: OptimizerKind,

    /// Weight initialisation: a fixed std (--weight-init-std), He (Relu) or Xavier (Sigmoid)
    #[arg(long, value_enum, default_value_t)]
    pub init: InitKind,

    /// Standard deviation of the initial weights with --init std
    #[arg(long, value_name = "F", default_value_t = 0.01, value_parser = positive_f64,
          allow_hyphen_values = true)]
    pub weight_init_std: f64,

    /// Weight decay λ: adds ½ λ Σ ‖W‖² to the loss
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = non_negative_f64,
          allow_hyphen_values = true)]
    pub weight_decay: f64,

    /// Dropout ratio in [0, 1) after each hidden activation
    #[arg(long, value_name = "F", value_parser = dropout_ratio, allow_hyphen_values = true)]
    pub dropout: Option<f64>,

    /// Batch normalisation before each hidden activation
    #[arg(long)]
    pub batch_norm: bool,

    /// Learning-rate schedule: constant, step (×0.1 at 1/2 and again at 3/4 of the run) or cosine
    #[arg(long, default_value = "constant", value_parser = choice(&Schedule::ALL, Schedule::name))]
    pub schedule: Schedule,

    /// Batches drawn with replacement (book) or from shuffled epochs without replacement (shuffle)
    #[arg(long, default_value = "book", value_parser = choice(&Sampling::ALL, Sampling::name))]
    pub sampling: Sampling,

    /// Changes to each training sample at each step: none, or shift:N (moves each image by up to
    /// N pixels in each direction, drawn anew each time it is drawn)
    #[arg(long, value_name = "SPEC", default_value = "none", value_parser = parse_augment)]
    pub augment: Augment,

    /// Seed of the weights, batches and dropout masks: the same seed gives the same numbers
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,

    /// Element type: f32, or f64 as the book's NumPy code
    #[arg(long, default_value = "f32", value_parser = choice(&Dtype::ALL, Dtype::name))]
    pub dtype: Dtype,

    /// The number of classes, when the labels do not show it: by default it is the largest label
    /// plus one, and a class below it with no example is refused as a likely mistake
    #[arg(long, value_name = "N", value_parser = positive_usize, allow_negative_numbers = true)]
    pub classes: Option<usize>,

    /// Write one CSV line per epoch to FILE: epoch,iter,loss,train_acc,test_acc,seconds (seconds:
    /// training seconds so far)
    #[arg(long, value_name = "FILE.csv")]
    pub metrics: Option<PathBuf>,

    /// Save the trained model to FILE, atomically: safetensors, tensors named as PyTorch's
    /// nn.Sequential (layers.0.weight, ...), the architecture in its metadata
    #[arg(long, value_name = "FILE.safetensors")]
    pub save: Option<PathBuf>,

    /// With --save: keep the model of the epoch with the best test accuracy (saved whenever one is
    /// reached) instead of the last one; the test set then also chooses the model
    #[arg(long, requires = "save")]
    pub save_best: bool,

    /// With --save-best: stop after N epochs in a row without a better test accuracy
    #[arg(long, value_name = "N", requires = "save_best", value_parser = positive_usize,
          allow_negative_numbers = true)]
    pub patience: Option<usize>,

    /// Draw the learning curves (loss, train and test accuracy per epoch) to FILE as SVG
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,

    /// The memory the run may use, in MiB, instead of what the system has available: a run whose
    /// network, buffers and data are estimated to need more is refused before anything is
    /// allocated [default: the available memory, on Linux; elsewhere no limit]
    #[arg(long, value_name = "MIB", value_parser = positive_u64, allow_negative_numbers = true)]
    pub max_memory_mib: Option<u64>,

    /// Print only the final line
    #[arg(long, short)]
    pub quiet: bool,
}

/// The commands that use a saved model.
#[derive(Clone, Debug, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// A saved model's accuracy on the test set, per class, and its confusion matrix
    Eval(EvalArgs),
    /// The class of each PNG or PNM (PGM, PBM, PPM, PAM) image, and the most probable classes
    Predict(PredictArgs),
    /// A web page to draw digits on and see the model's classes, and the same over HTTP
    Serve(ServeArgs),
}

/// The arguments of `bp-train eval`.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct EvalArgs {
    /// The model file, as written by --save
    #[arg(long, value_name = "FILE.safetensors")]
    pub model: PathBuf,

    /// The data set's directory, as for training; only its test files are read [default:
    /// datasets/mnist]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// The most memory the test set may take once loaded, in MiB, as for training
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_DATA_MIB, value_parser = mib,
          allow_negative_numbers = true)]
    pub max_data_mib: u64,

    /// Also write one CSV line per test image to FILE: index,label,predicted,p0,p1,... (the class
    /// probabilities)
    #[arg(long, value_name = "FILE.csv")]
    pub predictions: Option<PathBuf>,
}

/// The arguments of `bp-train predict`.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct PredictArgs {
    /// The model file, as written by --save
    #[arg(long, value_name = "FILE.safetensors")]
    pub model: PathBuf,

    /// How many of the most probable classes to show
    #[arg(long, value_name = "K", default_value_t = 3, value_parser = positive_usize,
          allow_negative_numbers = true)]
    pub top: usize,

    /// How an image becomes the model's input: scaled whole, or its digit fitted and centred as
    /// MNIST's were (for a digit that fills its picture)
    #[arg(long, value_enum, default_value_t)]
    pub fit: Fit,

    /// PNG or PNM images of one digit each, light on dark or dark on light (inverted), any size
    /// (scaled to the model's input by area averaging)
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<PathBuf>,
}

/// The arguments of `bp-train serve`.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct ServeArgs {
    /// The model file, as written by --save
    #[arg(long, value_name = "FILE.safetensors")]
    pub model: PathBuf,

    /// The address and port to listen on; 127.0.0.1 is this machine only, 0.0.0.0 every network
    /// it is on (anyone there can use the server: it has no authentication); port 0 picks a free
    /// one
    #[arg(long, value_name = "IP:PORT", default_value = DEFAULT_SERVE_ADDR)]
    pub addr: SocketAddr,

    /// How an image becomes the model's input, as for predict; drawn digits are fitted and
    /// centred as MNIST's were
    #[arg(long, value_enum, default_value_t = Fit::Mnist)]
    pub fit: Fit,
}

/// Where `bp-train serve` listens unless `--addr` says otherwise: this machine only.
pub const DEFAULT_SERVE_ADDR: &str = "127.0.0.1:8080";

/// The `--hidden` sizes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HiddenSizes(pub Vec<usize>);

/// The `--layers` list.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerList(pub Vec<LayerSpec>);

/// A value parser for one of the library's choices, by name: `--optimizer adam`.
fn choice<T: Copy + Send + Sync + 'static>(
    all: &'static [T],
    name: fn(T) -> &'static str,
) -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(all.iter().map(|&v| name(v))).map(move |s| {
        all.iter()
            .copied()
            .find(|&v| name(v) == s)
            .expect("clap accepts only the possible values")
    })
}

/// An augmentation, as the library reads it.
fn parse_augment(s: &str) -> Result<Augment, String> {
    s.parse()
}

/// A network of [`NAMED_NETS`], by name.
fn named_net() -> impl TypedValueParser<Value = &'static NamedNet> {
    PossibleValuesParser::new(NAMED_NETS.iter().map(|n| n.name))
        .map(|s| NamedNet::find(&s).expect("clap accepts only the possible values"))
}

/// A layer list, as bp-core reads it.
fn parse_layer_list(s: &str) -> Result<LayerList, String> {
    parse_layers(s).map(LayerList).map_err(|e| e.to_string())
}

/// The layer words, for the end of `--help`.
fn layer_help() -> String {
    let mut help =
        String::from("Layers for --layers (comma-separated; words as in the book or PyTorch):\n");
    let width = LAYER_WORDS
        .iter()
        .map(|w| w.word.len() + w.args.len() + 1)
        .max()
        .unwrap_or(0);
    for w in LAYER_WORDS {
        let usage = format!("{} {}", w.word, w.args);
        help.push_str(&format!("  {usage:<width$}  {}", w.about));
        if !w.aliases.is_empty() {
            help.push_str(&format!(" (also: {})", w.aliases.join(", ")));
        }
        help.push('\n');
    }
    help.push_str("Example: --layers \"affine 100, relu, dropout 0.3, affine 10\"");
    help
}

/// A positive integer.
fn positive_usize(s: &str) -> Result<usize, String> {
    match s.trim().parse::<i128>() {
        Ok(v) if v >= 1 => usize::try_from(v).map_err(|_| format!("{v} is too large")),
        Ok(_) => Err("must be a positive integer".to_owned()),
        Err(_) => Err("not a positive integer".to_owned()),
    }
}

/// The most MiB a byte count in a `u64` can be.
const MAX_MIB: u64 = u64::MAX >> 20;

/// A positive number of MiB, whose bytes fit a `u64`.
fn mib(s: &str) -> Result<u64, String> {
    let v = positive_usize(s)?;
    u64::try_from(v)
        .ok()
        .filter(|&v| v <= MAX_MIB)
        .ok_or_else(|| format!("{v} MiB is too large: at most {MAX_MIB}"))
}

/// MiB as bytes.
pub fn mib_bytes(mib: u64) -> u64 {
    mib.saturating_mul(1 << 20)
}

/// A positive integer of up to 64 bits.
fn positive_u64(s: &str) -> Result<u64, String> {
    match s.trim().parse::<i128>() {
        Ok(v) if v >= 1 => u64::try_from(v).map_err(|_| format!("{v} is too large")),
        Ok(_) => Err("must be a positive integer".to_owned()),
        Err(_) => Err("not a positive integer".to_owned()),
    }
}

/// A finite number.
fn finite_f64(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err("not a finite number".to_owned()),
    }
}

/// A finite number > 0.
fn positive_f64(s: &str) -> Result<f64, String> {
    let v = finite_f64(s)?;
    if v > 0.0 {
        Ok(v)
    } else {
        Err("must be greater than 0".to_owned())
    }
}

/// A finite number >= 0.
fn non_negative_f64(s: &str) -> Result<f64, String> {
    let v = finite_f64(s)?;
    if v >= 0.0 {
        Ok(v)
    } else {
        Err("must be 0 or more".to_owned())
    }
}

/// A dropout ratio in [0, 1).
fn dropout_ratio(s: &str) -> Result<f64, String> {
    let v = finite_f64(s)?;
    if (0.0..1.0).contains(&v) {
        Ok(v)
    } else {
        Err("must be in [0, 1)".to_owned())
    }
}

/// Comma-separated positive sizes: `50`, `256,128`.
fn parse_hidden(s: &str) -> Result<HiddenSizes, String> {
    s.split(',')
        .map(positive_usize)
        .collect::<Result<Vec<_>, _>>()
        .map(HiddenSizes)
        .map_err(|_| {
            "hidden sizes are positive integers separated by commas, like 50 or 256,128".to_owned()
        })
}

/// The data directory: `dir` if given; else `datasets/mnist` under the working directory if it
/// exists, else the repository's `datasets/mnist` (found from this crate's source directory, so that
/// `cargo run -p bp-train` works from anywhere in the repository), else `datasets/mnist` (and
/// loading will report it missing).
pub fn resolve_data_dir(dir: Option<&Path>) -> PathBuf {
    if let Some(dir) = dir {
        return dir.to_path_buf();
    }
    let local = PathBuf::from(DEFAULT_DATA_DIR);
    if local.is_dir() {
        return local;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("..")
        .join(DEFAULT_DATA_DIR);
    if repo.is_dir() { repo } else { local }
}

/// A parsed command line.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    /// The run to do.
    pub run: RunConfig,
    /// `--quiet`: print only the final line.
    pub quiet: bool,
    /// `--plot`: the SVG file to draw the learning curves to.
    pub plot: Option<PathBuf>,
}

/// What a command line asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Invocation {
    /// Train (no subcommand).
    Train(Box<Parsed>),
    /// `bp-train eval`.
    Eval(EvalArgs),
    /// `bp-train predict`.
    Predict(PredictArgs),
    /// `bp-train serve`.
    Serve(ServeArgs),
}

impl Cli {
    /// Parses a command line (`args[0]` is the program name), checks the combinations the flags'
    /// own parsers cannot, and makes the run's configuration.
    ///
    /// # Errors
    ///
    /// A clap error for an unknown flag or a bad value (exit status 2), also if
    /// `--weight-init-std` is given with `--init he|xavier`; for `--help` and `--version`, the
    /// clap "error" that displays them (exit status 0).
    #[cfg(test)]
    pub fn parse_config_from<I, T>(args: I) -> Result<Parsed, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        match Cli::parse_invocation_from(args)? {
            Invocation::Train(parsed) => Ok(*parsed),
            Invocation::Eval(_) | Invocation::Predict(_) | Invocation::Serve(_) => {
                Err(Cli::command().error(
                    ErrorKind::InvalidSubcommand,
                    "a training command line takes no subcommand",
                ))
            }
        }
    }

    /// Parses a command line (`args[0]` is the program name): a training run, as
    /// [`parse_config_from`](Cli::parse_config_from), or a subcommand with its arguments.
    ///
    /// # Errors
    ///
    /// As [`parse_config_from`](Cli::parse_config_from); also for training flags given with a
    /// subcommand.
    pub fn parse_invocation_from<I, T>(args: I) -> Result<Invocation, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let matches = Cli::command()
            .try_get_matches_from(&args)
            .map_err(|err| misplaced_flag(&err, &args).unwrap_or(err))?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        match cli.command.take() {
            Some(Command::Eval(args)) => return Ok(Invocation::Eval(args)),
            Some(Command::Predict(args)) => return Ok(Invocation::Predict(args)),
            Some(Command::Serve(args)) => return Ok(Invocation::Serve(args)),
            None => {}
        }
        let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
        let given = Given {
            weight_init_std: given("weight_init_std"),
            init: given("init"),
            optimizer: given("optimizer"),
            batch_size: given("batch_size"),
        };
        let quiet = cli.quiet;
        let plot = cli.plot.clone();
        Ok(Invocation::Train(Box::new(Parsed {
            run: cli.into_run_config(given)?,
            quiet,
            plot,
        })))
    }

    /// The run's configuration; `given` tells which flags with defaults were on the command line.
    fn into_run_config(self, given: Given) -> Result<RunConfig, clap::Error> {
        let std_given = given.weight_init_std;
        let init = match (self.net, self.init) {
            // A named net's own initialisation, unless --init or --weight-init-std says otherwise.
            (Some(net), _) if !given.init && !std_given => net.init,
            (_, InitKind::Std) => Init::Std(self.weight_init_std),
            (_, InitKind::He | InitKind::Xavier) if std_given => {
                return Err(Cli::command().error(
                    ErrorKind::ArgumentConflict,
                    "--weight-init-std only applies to --init std",
                ));
            }
            (_, InitKind::He) => Init::He,
            (_, InitKind::Xavier) => Init::Xavier,
        };
        let length = match (self.iters, self.epochs, self.net) {
            (_, Some(e), _) => Length::Epochs(e),
            (Some(i), None, _) => Length::Iters(i),
            (None, None, Some(net)) => Length::Epochs(net.epochs),
            (None, None, None) => Length::Iters(10_000),
        };
        let optimizer = match self.net {
            Some(net) if !given.optimizer => net.optimizer,
            _ => self.optimizer,
        };
        let lr = match (self.lr, self.net) {
            (Some(lr), _) => lr,
            (None, Some(net)) if optimizer == net.optimizer => net.lr,
            (None, _) => optimizer.default_lr(),
        };
        let batch_size = match self.net {
            Some(net) if !given.batch_size => net.batch_size,
            _ => self.batch_size,
        };
        Ok(RunConfig {
            data_dir: resolve_data_dir(self.data_dir.as_deref()),
            max_data_bytes: mib_bytes(self.max_data_mib),
            net: NetSpec {
                stack: match (self.layers, self.net) {
                    (Some(LayerList(layers)), _) => Stack::Layers(layers),
                    (None, Some(net)) => Stack::Named(net),
                    (None, None) => Stack::Hidden {
                        sizes: self.hidden.0,
                        activation: self.activation,
                        dropout: self.dropout,
                        batch_norm: self.batch_norm,
                    },
                },
                init,
                weight_decay: self.weight_decay,
            },
            classes: self.classes,
            train: TrainConfig {
                length,
                batch_size,
                lr,
                optimizer,
                schedule: self.schedule,
                sampling: self.sampling,
                seed: self.seed,
                metrics: self.metrics,
                augment: self.augment,
            },
            dtype: self.dtype,
            max_memory_mib: self.max_memory_mib,
            save: self.save.map(|path| SaveConfig {
                path,
                best: self.save_best,
                patience: self.patience,
            }),
        })
    }
}

/// Which flags that have defaults were given on the command line: a named net's settings give way
/// to them.
#[derive(Clone, Copy, Debug)]
struct Given {
    weight_init_std: bool,
    init: bool,
    optimizer: bool,
    batch_size: bool,
}

/// The commands of `bp-train`: training (no subcommand, `None`) and each subcommand by name.
fn commands() -> Vec<(Option<String>, clap::Command)> {
    let root = Cli::command();
    let mut all: Vec<(Option<String>, clap::Command)> = root
        .get_subcommands()
        .map(|c| (Some(c.get_name().to_owned()), c.clone()))
        .collect();
    all.insert(0, (None, root));
    all
}

/// Whether `arg` is the flag `flag`, written `--long` or `-s`.
fn is_flag(arg: &clap::Arg, flag: &str) -> bool {
    if let Some(long) = flag.strip_prefix("--") {
        return arg.get_long() == Some(long);
    }
    let mut short = flag.strip_prefix('-').unwrap_or_default().chars();
    matches!((short.next(), short.next()), (Some(c), None) if arg.get_short() == Some(c))
}

/// Whether `command` has the flag `flag`, written `--long` or `-s`.
fn has_flag(command: &clap::Command, flag: &str) -> bool {
    command.get_arguments().any(|a| is_flag(a, flag))
}

/// The subcommand a command line gives (`None` for training): its first word that names one
/// and is not the value of a flag before it.
fn subcommand_of(args: &[OsString]) -> Option<String> {
    let root = Cli::command();
    let mut value_next = false;
    for arg in args.iter().skip(1) {
        let Some(arg) = arg.to_str() else {
            value_next = false;
            continue;
        };
        if std::mem::take(&mut value_next) {
            continue;
        }
        if arg == "--" {
            return None;
        }
        if arg.starts_with('-') {
            value_next = !arg.contains('=')
                && root
                    .get_arguments()
                    .any(|a| is_flag(a, arg) && a.get_action().takes_values());
            continue;
        }
        return root
            .get_subcommands()
            .any(|c| c.get_name() == arg)
            .then(|| arg.to_owned());
    }
    None
}

/// How a message names a command: "training" or "`bp-train eval`".
fn command_name(command: Option<&str>) -> String {
    command.map_or_else(|| "training".to_owned(), |c| format!("`bp-train {c}`"))
}

/// A clearer error for a flag given where it does not belong (a training flag after `eval`, or
/// before it, an `eval` flag with `predict` or without a subcommand): the error names the flag
/// and where it belongs. `None` for every other error, and for flags no command has.
fn misplaced_flag(err: &clap::Error, args: &[OsString]) -> Option<clap::Error> {
    use clap::error::{ContextKind, ContextValue};
    let context = |kind| match err.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let commands = commands();
    let owners = |flag: &str| -> Vec<Option<String>> {
        commands
            .iter()
            .filter(|(_, c)| has_flag(c, flag))
            .map(|(name, _)| name.clone())
            .collect()
    };
    let message = match err.kind() {
        // A flag after a subcommand (or without one) that it does not take.
        ErrorKind::UnknownArgument => {
            let given = context(ContextKind::InvalidArg)?;
            let flag = given.split('=').next().unwrap_or(&given).to_owned();
            let owners = owners(&flag);
            let here = subcommand_of(args);
            if owners.is_empty() || owners.contains(&here) {
                return None;
            }
            let names: Vec<String> = owners.iter().map(|o| command_name(o.as_deref())).collect();
            let belongs = match names.split_last() {
                Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
                _ => names.join(""),
            };
            match here {
                Some(sub) if owners.contains(&None) => format!(
                    "{flag} is a training flag (bp-train without a subcommand); `bp-train {sub}` \
                     does not take it"
                ),
                here => format!(
                    "{flag} belongs to {belongs}; {} does not take it",
                    command_name(here.as_deref())
                ),
            }
        }
        // A training flag before a subcommand.
        ErrorKind::ArgumentConflict => {
            let sub = context(ContextKind::InvalidSubcommand)?;
            let prior = context(ContextKind::PriorArg)?;
            // clap reads a stray word after a training flag as a subcommand too.
            if !commands.iter().any(|(name, _)| name.as_ref() == Some(&sub)) {
                return None;
            }
            let flag = prior.split([' ', '=']).next().unwrap_or(&prior).to_owned();
            if owners(&flag).contains(&Some(sub.clone())) {
                format!(
                    "{flag} before `{sub}` is a training flag; to give it to `bp-train {sub}`, \
                     put it after `{sub}`"
                )
            } else {
                format!(
                    "{flag} is a training flag (bp-train without a subcommand); `bp-train {sub}` \
                     does not take it"
                )
            }
        }
        _ => return None,
    };
    Some(Cli::command().error(err.kind(), message))
}

/// The message of a clap error on one line: its first line, plus the list of possible values if
/// clap gave one. Help and version output are returned whole.
pub fn one_line_error(err: &clap::Error) -> String {
    let text = err.render().to_string();
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        return text;
    }
    let mut lines = text.lines();
    let mut line = lines
        .next()
        .unwrap_or("error: invalid arguments")
        .trim_end()
        .to_owned();
    if err.kind() == ErrorKind::MissingRequiredArgument {
        // The arguments are listed on the indented lines that follow.
        let missing: Vec<&str> = lines
            .take_while(|l| l.starts_with("  "))
            .map(str::trim)
            .collect();
        line.push(' ');
        line.push_str(&missing.join(", "));
    } else if let Some(values) = lines
        .map(str::trim)
        .find(|l| l.starts_with("[possible values:"))
    {
        line.push(' ');
        line.push_str(values);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::NetSpec;

    fn parse(args: &[&str]) -> Result<RunConfig, clap::Error> {
        Cli::parse_config_from(std::iter::once("bp-train").chain(args.iter().copied()))
            .map(|p| p.run)
    }

    fn message(args: &[&str]) -> String {
        one_line_error(&parse(args).unwrap_err())
    }

    #[test]
    fn defaults_are_the_books() {
        let cfg = parse(&[]).unwrap();
        assert_eq!(cfg.net, NetSpec::default());
        assert_eq!(cfg.train, TrainConfig::default());
        assert_eq!(cfg.dtype, Dtype::F32);
        assert!(cfg.data_dir.ends_with("datasets/mnist"));
    }

    #[test]
    fn a_named_net_sets_its_defaults_and_flags_override_them() {
        let cfg = parse(&["--net", "simple-convnet"]).unwrap();
        assert_eq!(
            cfg.net.layers(784, 10),
            parse_layers("conv 30 5x5, relu, maxpool 2 stride 2, affine 100, relu, affine 10")
                .unwrap()
        );
        assert_eq!(cfg.net.init, Init::Std(0.01));
        assert_eq!(cfg.train.optimizer, OptimizerKind::Adam);
        assert_eq!(cfg.train.lr, 0.001);
        assert_eq!(cfg.train.batch_size, 100);
        assert_eq!(cfg.train.length, Length::Epochs(20));

        let deep = parse(&["--net", "deep-convnet"]).unwrap();
        assert_eq!(deep.net.init, Init::He);
        let layers = deep.net.layers(784, 10);
        assert_eq!(layers.len(), 20);
        assert_eq!(layers[5].to_string(), "conv 32 3x3 pad 1");
        assert_eq!(layers[7].to_string(), "conv 32 3x3 pad 2");

        let cfg = parse(&[
            "--net",
            "deep-convnet",
            "--iters",
            "30",
            "--batch-size",
            "50",
            "--optimizer",
            "sgd",
            "--weight-init-std",
            "0.1",
        ])
        .unwrap();
        assert_eq!(cfg.train.length, Length::Iters(30));
        assert_eq!(cfg.train.batch_size, 50);
        assert_eq!(cfg.train.optimizer, OptimizerKind::Sgd);
        // The net's lr is Adam's; another optimizer takes its own default.
        assert_eq!(cfg.train.lr, 0.1);
        assert_eq!(cfg.net.init, Init::Std(0.1));
        let cfg = parse(&[
            "--net",
            "simple-convnet",
            "--init",
            "xavier",
            "--lr",
            "0.01",
        ])
        .unwrap();
        assert_eq!((cfg.net.init, cfg.train.lr), (Init::Xavier, 0.01));

        let msg = message(&["--net", "lenet"]);
        assert!(
            msg.contains("[possible values: simple-convnet, deep-convnet]"),
            "{msg}"
        );
        let msg = message(&["--net", "simple-convnet", "--hidden", "50"]);
        assert!(msg.contains("cannot be used with"), "{msg}");
        let msg = message(&["--net", "simple-convnet", "--layers", "affine 10"]);
        assert!(msg.contains("cannot be used with"), "{msg}");
    }

    #[test]
    fn flags_make_the_config() {
        let cfg = parse(&[
            "--data-dir",
            "d",
            "--epochs",
            "3",
            "--batch-size",
            "32",
            "--hidden",
            "256, 128",
            "--activation",
            "sigmoid",
            "--optimizer",
            "adam",
            "--init",
            "xavier",
            "--weight-decay",
            "1e-4",
            "--dropout",
            "0.25",
            "--batch-norm",
            "--schedule",
            "cosine",
            "--sampling",
            "shuffle",
            "--seed",
            "7",
            "--dtype",
            "f64",
            "--metrics",
            "m.csv",
            "--max-memory-mib",
            "512",
            "--quiet",
        ])
        .unwrap();
        assert_eq!(cfg.max_memory_mib, Some(512));
        assert_eq!(cfg.data_dir, PathBuf::from("d"));
        assert_eq!(
            cfg.net.stack,
            Stack::Hidden {
                sizes: vec![256, 128],
                activation: Activation::Sigmoid,
                dropout: Some(0.25),
                batch_norm: true,
            }
        );
        assert_eq!(cfg.net.init, Init::Xavier);
        assert_eq!(cfg.net.weight_decay, 1e-4);
        assert_eq!(cfg.train.length, Length::Epochs(3));
        assert_eq!(cfg.train.batch_size, 32);
        assert_eq!(cfg.train.lr, 0.001);
        assert_eq!(cfg.train.optimizer, OptimizerKind::Adam);
        assert_eq!(cfg.train.schedule, Schedule::Cosine);
        assert_eq!(cfg.train.sampling, Sampling::Shuffle);
        assert_eq!(cfg.train.seed, 7);
        assert_eq!(cfg.train.metrics, Some(PathBuf::from("m.csv")));
        assert_eq!(cfg.dtype, Dtype::F64);
        let cfg = parse(&["--iters", "5", "--lr", "0.5", "--weight-init-std", "0.1"]).unwrap();
        assert_eq!(cfg.train.length, Length::Iters(5));
        assert_eq!(cfg.train.lr, 0.5);
        assert_eq!(cfg.net.init, Init::Std(0.1));
    }

    #[test]
    fn bad_values_are_refused_in_one_line() {
        let cases: &[(&[&str], &str)] = &[
            (&["--batch-size", "0"], "must be a positive integer"),
            (&["--batch-size", "-5"], "must be a positive integer"),
            (&["--iters", "0"], "'--iters <N>'"),
            (&["--epochs", "x"], "not a positive integer"),
            (&["--hidden", "100,0"], "hidden sizes are positive integers"),
            (&["--hidden", "-3"], "'-3'"),
            (&["--hidden", ""], "hidden sizes"),
            (&["--lr", "0"], "must be greater than 0"),
            (&["--lr", "-0.1"], "must be greater than 0"),
            (&["--lr", "nan"], "not a finite number"),
            (&["--dropout", "1"], "must be in [0, 1)"),
            (&["--dropout", "-0.5"], "must be in [0, 1)"),
            (&["--weight-decay", "-1"], "must be 0 or more"),
            (&["--iters", "10", "--epochs", "2"], "cannot be used with"),
            (
                &["--init", "he", "--weight-init-std", "0.1"],
                "--weight-init-std only applies",
            ),
            (
                &["--optimizer", "rmsprop"],
                "[possible values: sgd, momentum, adagrad, adam]",
            ),
            (&["--bogus"], "unexpected argument '--bogus'"),
        ];
        for (args, expected) in cases {
            let msg = message(args);
            assert!(msg.starts_with("error: "), "{args:?}: {msg}");
            assert!(msg.contains(expected), "{args:?}: {msg}");
            assert!(!msg.contains('\n'), "{args:?}: {msg}");
        }
        assert_eq!(parse(&["--lr", "0"]).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn a_layer_list_is_the_stack_and_the_short_form_builds_the_same_list() {
        let cfg = parse(&[
            "--layers",
            "affine 100, relu, dropout 0.3, affine 10",
            "--classes",
            "10",
        ])
        .unwrap();
        let list = "affine 100, relu, dropout 0.3, affine 10";
        assert_eq!(cfg.net.stack, Stack::Layers(parse_layers(list).unwrap()));
        assert_eq!(cfg.classes, Some(10));
        let short = parse(&["--hidden", "100", "--dropout", "0.3"]).unwrap();
        assert_eq!(short.net.layers(784, 10), cfg.net.layers(784, 10));
    }

    #[test]
    fn malformed_layer_lists_are_refused_in_one_line_naming_the_layer() {
        let cases: &[(&str, &str)] = &[
            ("", "the layer list is empty"),
            ("affine 100,, affine 10", "layer 2 ``: is empty"),
            (
                "affine 100, rleu, affine 10",
                "layer 2 `rleu`: unknown layer `rleu`; the layers are affine N",
            ),
            (
                "affine, relu",
                "layer 1 `affine`: affine takes one argument, N",
            ),
            (
                "affine 0",
                "layer 1 `affine 0`: affine N, the number of outputs, must be a positive integer",
            ),
            ("affine 1e3", "not `1e3`"),
            (
                "affine 50, relu 2, affine 10",
                "layer 2 `relu 2`: relu takes no arguments, given `2`",
            ),
            (
                "affine 50, dropout 1.5, affine 10",
                "layer 2 `dropout 1.5`: dropout R must be a number in [0, 1)",
            ),
            (
                "affine 50, dropout, affine 10",
                "layer 2 `dropout`: dropout takes one argument, R",
            ),
            ("affine 50, relu, affine 10,", "layer 4 ``: is empty"),
            (
                "conv 30 5y5, relu, affine 10",
                "layer 1 `conv 30 5y5`: conv KxK, the filter's size, must be like 5x5 or 3x2, not `5y5`",
            ),
        ];
        for (list, expected) in cases {
            let msg = message(&["--layers", list]);
            assert!(msg.starts_with("error: invalid value"), "{list:?}: {msg}");
            assert!(msg.contains(expected), "{list:?}: {msg}");
            assert!(!msg.contains('\n'), "{list:?}: {msg}");
        }
        assert_eq!(parse(&["--layers", "x"]).unwrap_err().exit_code(), 2);
        let msg = message(&["--layers", "affine 10", "--hidden", "50"]);
        assert!(msg.contains("cannot be used with"), "{msg}");
    }

    #[test]
    fn help_lists_every_layer_word_with_its_arguments() {
        let help = Cli::command().render_long_help().to_string();
        for w in LAYER_WORDS {
            let usage = format!("{} {}", w.word, w.args);
            assert!(help.contains(usage.trim()), "{usage}");
            assert!(help.contains(w.about), "{}", w.about);
        }
    }

    #[test]
    fn the_default_data_dir_is_found_from_the_crate_directory() {
        let dir = resolve_data_dir(None);
        assert!(
            dir.join("train-images-idx3-ubyte.gz").is_file(),
            "{}",
            dir.display()
        );
        assert_eq!(resolve_data_dir(Some(Path::new("x"))), PathBuf::from("x"));
    }

    fn invocation_error(args: &[&str]) -> clap::Error {
        Cli::parse_invocation_from(std::iter::once("bp-train").chain(args.iter().copied()))
            .unwrap_err()
    }

    #[test]
    fn flags_given_to_the_wrong_command_are_named_with_where_they_belong() {
        let training = "is a training flag (bp-train without a subcommand)";
        let cases: &[(&[&str], String)] = &[
            (
                &["eval", "--model", "m", "--batch-size", "5"],
                format!("--batch-size {training}; `bp-train eval` does not take it"),
            ),
            (
                &["eval", "--model", "m", "--max-memory-mib=5"],
                format!("--max-memory-mib {training}; `bp-train eval` does not take it"),
            ),
            (
                &["--seed", "3", "predict", "--model", "m", "x.png"],
                format!("--seed {training}; `bp-train predict` does not take it"),
            ),
            (
                &["--batch-norm", "eval", "--model", "m"],
                format!("--batch-norm {training}; `bp-train eval` does not take it"),
            ),
            (
                &["--data-dir", "eval", "eval", "--model", "m"],
                "--data-dir before `eval` is a training flag; to give it to `bp-train eval`, put \
                 it after `eval`"
                    .to_owned(),
            ),
            (
                &["--fit", "mnist"],
                "--fit belongs to `bp-train predict` and `bp-train serve`; training does not take it"
                    .to_owned(),
            ),
            (
                &["eval", "--model", "m", "--fit", "mnist"],
                "--fit belongs to `bp-train predict` and `bp-train serve`; `bp-train eval` does not \
                 take it"
                    .to_owned(),
            ),
        ];
        for (args, expected) in cases {
            let err = invocation_error(args);
            assert_eq!(
                one_line_error(&err),
                format!("error: {expected}"),
                "{args:?}"
            );
            assert_eq!(err.exit_code(), 2);
        }
        // A word that is a flag's value is not taken for the subcommand.
        let os = |args: &[&str]| args.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            subcommand_of(&os(&["bp-train", "--data-dir", "eval"])),
            None
        );
        assert_eq!(
            subcommand_of(&os(&["bp-train", "--data-dir=d", "eval", "--model", "m"])),
            Some("eval".to_owned())
        );
        assert_eq!(
            subcommand_of(&os(&["bp-train", "-q", "predict"])),
            Some("predict".to_owned())
        );
        assert_eq!(subcommand_of(&os(&["bp-train", "--", "eval"])), None);
        // Flags no command has, and stray words, keep clap's messages.
        let err = invocation_error(&["predict", "--model", "m", "--bogus", "x.png"]);
        assert_eq!(
            one_line_error(&err),
            "error: unexpected argument '--bogus' found"
        );
        let err = invocation_error(&["--layers", "affine 10", "stray"]);
        assert_eq!(
            one_line_error(&err),
            "error: the subcommand 'stray' cannot be used with '--layers <LIST>'"
        );
    }

    #[test]
    fn max_data_mib_is_the_loaders_limit_in_mib() {
        assert_eq!(parse(&[]).unwrap().max_data_bytes, 1 << 30);
        assert_eq!(
            parse(&["--max-data-mib", "4096"]).unwrap().max_data_bytes,
            4 << 30
        );
        assert_eq!(
            parse(&["--max-data-mib", "17592186044415"])
                .unwrap()
                .max_data_bytes,
            u64::MAX - ((1 << 20) - 1)
        );
        for (value, expected) in [
            ("0", "must be a positive integer"),
            ("1.5", "not a positive integer"),
            (
                "17592186044416",
                "17592186044416 MiB is too large: at most 17592186044415",
            ),
            ("99999999999999999999999", "is too large"),
        ] {
            let msg = message(&["--max-data-mib", value]);
            assert!(msg.contains(expected), "{value}: {msg}");
        }
        let eval = |args: &[&str]| match Cli::parse_invocation_from(
            ["bp-train", "eval", "--model", "m"].iter().chain(args),
        ) {
            Ok(Invocation::Eval(e)) => e.max_data_mib,
            other => panic!("{other:?}"),
        };
        assert_eq!(eval(&[]), 1024);
        assert_eq!(eval(&["--max-data-mib", "3"]), 3);
    }

    #[test]
    fn serve_listens_on_localhost_and_fits_like_mnist_unless_told_otherwise() {
        let serve = |args: &[&str]| {
            Cli::parse_invocation_from(["bp-train", "serve", "--model", "m"].iter().chain(args))
        };
        match serve(&[]) {
            Ok(Invocation::Serve(s)) => {
                assert_eq!(s.addr, "127.0.0.1:8080".parse().unwrap());
                assert_eq!(s.fit, Fit::Mnist);
                assert_eq!(s.model, PathBuf::from("m"));
            }
            other => panic!("{other:?}"),
        }
        match serve(&["--addr", "0.0.0.0:0", "--fit", "scale"]) {
            Ok(Invocation::Serve(s)) => {
                assert_eq!(s.addr, "0.0.0.0:0".parse().unwrap());
                assert_eq!(s.fit, Fit::Scale);
            }
            other => panic!("{other:?}"),
        }
        for bad in ["localhost", "127.0.0.1", "127.0.0.1:99999", "[::1]"] {
            let err = serve(&["--addr", bad]).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            let line = one_line_error(&err);
            assert!(
                line.starts_with(&format!(
                    "error: invalid value '{bad}' for '--addr <IP:PORT>'"
                )),
                "{line}"
            );
        }
    }

    #[test]
    fn the_command_is_well_formed() {
        Cli::command().debug_assert();
    }
}
