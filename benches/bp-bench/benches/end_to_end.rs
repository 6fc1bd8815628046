//! End-to-end benchmark: the book's run (TwoLayerNet 784-50-10, batch 100, 10000 iterations of SGD
//! with lr 0.1, book sampling) in f32 and f64, a wide net (784-800-10, batch 100, whole epochs), and
//! the evaluation of accuracy on all 70,000 MNIST images, through the real training loop
//! (`bp_train::train`, which times only the training steps).
//!
//! Each case runs several times; the table shows medians. The f32 cases run with one thread and with
//! the default (a helper thread for large matrix products on a machine with two CPUs or more),
//! alternating, so that the two are compared under the same conditions.
//!
//! The book's convnets (`bp-train --net simple-convnet` and `deep-convnet`, f32, batch 100, Adam)
//! train for `--conv-iters` steps (100 by default) with the default threads; their seconds per
//! epoch are the median seconds per step times the 600 steps of an epoch.
//!
//! Run with `cargo bench -p bp-bench`; `cargo bench -p bp-bench -- --runs 5` for more runs,
//! `-- --iters 2000` for shorter book runs, and `-- book`, `-- f64`, `-- wide`, `-- eval`,
//! `-- simple-convnet` or `-- deep-convnet` for some cases only.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use bp_bench::{median, predict_flops, stack_step_flops, step_flops};
use bp_data::{MnistOptions, load_mnist};
use bp_train::{
    Dataset, Length, NamedNet, NetOptions, Network, Observer, Silent, Stream, TrainConfig,
    TrainSummary, TwoLayerNet, rng, train,
};
use ndarray::{Array2, ArrayD, Axis, Ix2, NdFloat, concatenate};

struct Data<A> {
    x_train: Array2<A>,
    t_train: Vec<usize>,
    x_test: Array2<A>,
    t_test: Vec<usize>,
}

fn load<A: NdFloat>(dir: &PathBuf) -> Result<Data<A>, String> {
    let opts = MnistOptions::default();
    let mnist = load_mnist::<A>(dir, &opts).map_err(|e| format!("{e}"))?;
    let two = |x: ArrayD<A>| {
        x.into_dimensionality::<Ix2>()
            .map_err(|e| format!("flattened images: {e}"))
    };
    Ok(Data {
        t_train: mnist.t_train.to_index(),
        t_test: mnist.t_test.to_index(),
        x_train: two(mnist.x_train)?,
        x_test: two(mnist.x_test)?,
    })
}

/// One training run's numbers.
struct Run {
    summary: TrainSummary,
    seconds_per_epoch: f64,
}

fn train_run<A: NdFloat + 'static>(
    data: &Data<A>,
    hidden: usize,
    length: Length,
    threads: usize,
) -> (Run, Network<A>) {
    bp_core::set_threads(threads);
    let mut net = TwoLayerNet::<A>::new(784, hidden, 10, 0.01, &mut rng(0, Stream::Init));
    let cfg = TrainConfig {
        length,
        ..TrainConfig::default()
    };
    let train_set = Dataset::new(data.x_train.view(), &data.t_train);
    let test_set = Dataset::new(data.x_test.view(), &data.t_test);
    let summary = train(&mut net, train_set, test_set, &cfg, &mut Silent)
        .expect("the benchmark runs do not diverge");
    // Whole epochs only: the book's 10000 iterations end with a partial 17th epoch.
    let full: Vec<f64> = summary
        .epochs
        .iter()
        .filter(|e| e.iter % 600 == 0)
        .map(|e| e.seconds)
        .collect();
    let seconds_per_epoch = median(&full);
    bp_core::set_threads(0);
    (
        Run {
            summary,
            seconds_per_epoch,
        },
        net,
    )
}

struct Row {
    case: String,
    threads: String,
    runs: Vec<Run>,
    flops_per_step: u64,
    batch: usize,
}

fn print_header() {
    println!(
        "{:<32} {:>7} {:>5} {:>9} {:>9} {:>10} {:>8} {:>8}",
        "case", "threads", "runs", "train s", "s/epoch", "samples/s", "GFLOP/s", "test acc"
    );
}

fn print_row(row: &Row) {
    let train: Vec<f64> = row.runs.iter().map(|r| r.summary.train_seconds).collect();
    let per_epoch: Vec<f64> = row.runs.iter().map(|r| r.seconds_per_epoch).collect();
    let iters = row.runs[0].summary.iters;
    let t = median(&train);
    let acc = row.runs[0].summary.test_acc;
    println!(
        "{:<32} {:>7} {:>5} {:>9.3} {:>9.3} {:>10.0} {:>8.1} {:>8.4}",
        row.case,
        row.threads,
        row.runs.len(),
        t,
        median(&per_epoch),
        (iters * row.batch) as f64 / t,
        row.flops_per_step as f64 * iters as f64 / t / 1e9,
        acc
    );
    let all: Vec<String> = train.iter().map(|s| format!("{s:.3}")).collect();
    println!("{:<32} train seconds of each run: {}", "", all.join(" "));
}

/// Runs a case with one thread and with the default, alternating.
fn compare_threads<A: NdFloat + 'static>(
    name: &str,
    data: &Data<A>,
    hidden: usize,
    length: Length,
    runs: usize,
) -> Option<Network<A>> {
    let default_threads = {
        bp_core::set_threads(0);
        bp_core::threads()
    };
    let mut one = Vec::new();
    let mut many = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        if default_threads > 1 {
            one.push(train_run(data, hidden, length, 1).0);
        }
        let (run, net) = train_run(data, hidden, length, 0);
        many.push(run);
        last = Some(net);
    }
    let flops = step_flops(&[784, hidden, 10], 100);
    if !one.is_empty() {
        print_row(&Row {
            case: name.to_string(),
            threads: "1".into(),
            runs: one,
            flops_per_step: flops,
            batch: 100,
        });
    }
    print_row(&Row {
        case: name.to_string(),
        threads: default_threads.to_string(),
        runs: many,
        flops_per_step: flops,
        batch: 100,
    });
    last
}

/// Records the time of each training step.
struct StepTimes {
    last: Instant,
    seconds: Vec<f64>,
}

impl Observer for StepTimes {
    fn step(&mut self, _done: usize) {
        let now = Instant::now();
        self.seconds.push((now - self.last).as_secs_f64());
        self.last = now;
    }
}

/// Trains a named convnet for `iters` steps on the images `x`, `runs` times, and prints a row:
/// seconds per epoch from the median step (the first two steps, which size the buffers, left out).
fn convnet(name: &str, x: &ArrayD<f32>, t: &[usize], iters: usize, runs: usize) {
    let net_spec = NamedNet::find(name).expect("a named net");
    let specs = net_spec.layers();
    let flops = stack_step_flops(&specs, &[1, 28, 28], net_spec.batch_size)
        .expect("the named nets fit MNIST");
    let mut per_step = Vec::new();
    for _ in 0..runs {
        let mut net = Network::<f32>::new(
            &[1, 28, 28],
            specs.clone(),
            NetOptions {
                init: net_spec.init,
                weight_decay: 0.0,
            },
            &mut rng(0, Stream::Init),
        )
        .expect("the named nets fit MNIST");
        let cfg = TrainConfig {
            length: Length::Iters(iters),
            batch_size: net_spec.batch_size,
            optimizer: net_spec.optimizer,
            lr: net_spec.lr,
            ..TrainConfig::default()
        };
        // A test set of one batch: the evaluation after the run is not timed anyway.
        let data = Dataset::new(x.view(), t);
        let small = Dataset::new(x.slice_axis(Axis(0), (0..100).into()), &t[..100]);
        let mut times = StepTimes {
            last: Instant::now(),
            seconds: Vec::with_capacity(iters),
        };
        train(&mut net, data, small, &cfg, &mut times).expect("the benchmark runs do not diverge");
        per_step.push(median(&times.seconds[2.min(times.seconds.len() - 1)..]));
    }
    let step = median(&per_step);
    let all: Vec<String> = per_step
        .iter()
        .map(|s| format!("{:.2}", s * 600.0))
        .collect();
    println!(
        "{:<32} {:>7} {:>5} {:>9} {:>9.2} {:>10.0} {:>8.1}   (s/epoch of each run: {})",
        format!("{name} f32, {iters} iters"),
        bp_core::threads(),
        runs,
        "",
        step * 600.0,
        net_spec.batch_size as f64 / step,
        flops as f64 / step / 1e9,
        all.join(" ")
    );
}

/// Times the accuracy on all 70,000 images (training and test sets, as the training loop evaluates
/// them after each epoch) with one thread and with the default.
fn eval<A: NdFloat>(name: &str, data: &Data<A>, net: &Network<A>, runs: usize) {
    let x_all = concatenate(Axis(0), &[data.x_train.view(), data.x_test.view()])
        .expect("the training and test images have the same width");
    let t_all: Vec<usize> = data.t_train.iter().chain(&data.t_test).copied().collect();
    let flops = predict_flops(
        &[
            784,
            net.layers_of::<bp_core::Affine<A>>()
                .next()
                .map_or(0, |a| a.output_size()),
            10,
        ],
        x_all.nrows(),
    );
    for threads in [1, 0] {
        bp_core::set_threads(threads);
        let mut seconds = Vec::new();
        let mut acc = 0.0;
        for _ in 0..runs.max(5) {
            let start = Instant::now();
            let train_acc = net.accuracy(data.x_train.view().into_dyn(), &data.t_train);
            let test_acc = net.accuracy(data.x_test.view().into_dyn(), &data.t_test);
            seconds.push(start.elapsed().as_secs_f64());
            acc = (train_acc * data.t_train.len() as f64 + test_acc * data.t_test.len() as f64)
                / t_all.len() as f64;
        }
        let t = median(&seconds);
        println!(
            "{:<32} {:>7} {:>5} eval {:.4} s for {} images, {:.0} images/s, {:.1} GFLOP/s, accuracy {:.4}",
            name,
            bp_core::threads(),
            seconds.len(),
            t,
            x_all.nrows(),
            x_all.nrows() as f64 / t,
            flops as f64 / t / 1e9,
            acc
        );
    }
    bp_core::set_threads(0);
}

fn main() -> ExitCode {
    let mut runs = 3;
    let mut iters = 10_000;
    let mut conv_iters = 100;
    let mut cases: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => runs = n,
                _ => {
                    eprintln!("--runs needs a positive number");
                    return ExitCode::from(2);
                }
            },
            "--iters" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => iters = n,
                _ => {
                    eprintln!("--iters needs a positive number");
                    return ExitCode::from(2);
                }
            },
            "--conv-iters" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 3 => conv_iters = n,
                _ => {
                    eprintln!("--conv-iters needs a number above 3");
                    return ExitCode::from(2);
                }
            },
            "--bench" => {}
            other if other.starts_with('-') => {}
            case => cases.push(case.to_string()),
        }
    }
    let wants = |case: &str| cases.is_empty() || cases.iter().any(|c| c == case);
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets/mnist"));
    let data32 = match load::<f32>(&dir) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "bp end-to-end benchmark: MNIST {} training + {} test images, {} CPUs available, medians of {runs} runs",
        data32.t_train.len(),
        data32.t_test.len(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    print_header();
    let mut book_net = None;
    if wants("book") || wants("eval") {
        let book = Length::Iters(iters);
        let runs_here = if wants("book") { runs } else { 1 };
        let name = format!("book 784-50-10 f32, {iters} iters");
        book_net = compare_threads(&name, &data32, 50, book, runs_here);
    }
    if wants("f64") || cases.is_empty() {
        let data64 = match load::<f64>(&dir) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut f64_runs = Vec::new();
        for _ in 0..runs {
            f64_runs.push(train_run(&data64, 50, Length::Iters(iters), 0).0);
        }
        print_row(&Row {
            case: format!("book 784-50-10 f64, {iters} iters"),
            threads: bp_core::threads().to_string(),
            runs: f64_runs,
            flops_per_step: step_flops(&[784, 50, 10], 100),
            batch: 100,
        });
    }
    if wants("wide") {
        compare_threads(
            "wide 784-800-10 f32, 2 epochs",
            &data32,
            800,
            Length::Epochs(2),
            runs,
        );
    }
    if wants("simple-convnet") || wants("deep-convnet") {
        let opts = MnistOptions {
            flatten: false,
            ..MnistOptions::default()
        };
        match load_mnist::<f32>(&dir, &opts) {
            Ok(mnist) => {
                let t = mnist.t_train.to_index();
                for name in ["simple-convnet", "deep-convnet"] {
                    if wants(name) {
                        convnet(name, &mnist.x_train, &t, conv_iters, runs);
                    }
                }
            }
            Err(e) => eprintln!("cannot load {}: {e}", dir.display()),
        }
    }
    if let (true, Some(net)) = (wants("eval"), &book_net) {
        eval("book net f32, accuracy", &data32, net, runs);
    }
    ExitCode::SUCCESS
}
