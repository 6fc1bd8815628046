//! The `bp-train` command: trains a network on MNIST and prints its progress, and evaluates and
//! applies saved models (`eval`, `predict`, `serve`); see `--help`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;
mod eval;
mod image;
mod memory;
mod outputs;
mod plot;
mod run;
mod serve;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use bp_core::Compact;
use bp_train::model_file::AnyModel;
use bp_train::{Augment, Dtype, EpochReport, Observer, Plan, SettingNames, TrainError};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::{
    Cli, EvalArgs, Invocation, Parsed, PredictArgs, ServeArgs, mib_bytes, one_line_error,
    resolve_data_dir,
};
use crate::eval::{classify_images, evaluate_file};
use crate::plot::write_learning_curves;
use crate::run::{DataInfo, RunConfig, RunError, RunObserver, epoch_line, final_line, run};

fn main() -> ExitCode {
    let invocation = match Cli::parse_invocation_from(std::env::args_os()) {
        Ok(invocation) => invocation,
        Err(err) => {
            let code = err.exit_code();
            if code == 0 {
                // --help, --version
                let _ = err.print();
            } else {
                eprintln!("{}", one_line_error(&err));
            }
            return ExitCode::from(u8::try_from(code).unwrap_or(2));
        }
    };
    match invocation {
        Invocation::Train(parsed) => train(*parsed),
        Invocation::Eval(args) => eval(&args),
        Invocation::Predict(args) => predict(&args),
        Invocation::Serve(args) => serve(&args),
    }
}

/// Prints an error and its causes on one line; the exit status of a failed command.
fn fail(err: impl Into<anyhow::Error>) -> ExitCode {
    eprintln!("error: {:#}", err.into());
    ExitCode::FAILURE
}

/// Trains as the command line says, then saves and plots what it asks for.
fn train(
    Parsed {
        run: config,
        quiet,
        plot,
    }: Parsed,
) -> ExitCode {
    if let Err(message) = outputs::check_train(&config, plot.as_deref()) {
        // An output that cannot be written is a usage error, found before any work.
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let mut printer = Printer {
        config: &config,
        quiet,
        net: String::new(),
        bar: None,
        terminal: std::io::stdout().is_terminal(),
    };
    let result = match config.dtype {
        Dtype::F32 => {
            run::<f32>(&config, &mut printer).map(|o| (o.summary, o.saved, o.stopped_early))
        }
        Dtype::F64 => {
            run::<f64>(&config, &mut printer).map(|o| (o.summary, o.saved, o.stopped_early))
        }
    };
    printer.clear_bar();
    let (summary, saved, stopped_early) = match result {
        Ok(outcome) => outcome,
        Err(err) if err.is_usage() => {
            // A layer list that does not fit the data, a run too long or too large: usage errors,
            // like a bad flag.
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
        Err(RunError::Train(err @ TrainError::Diverged { .. })) => {
            eprintln!("error: {}", err.message_naming(&FLAG_NAMES));
            return ExitCode::FAILURE;
        }
        Err(err) => return fail(err),
    };
    if stopped_early && !quiet {
        let patience = config.save.as_ref().and_then(|s| s.patience).unwrap_or(0);
        out(&format!(
            "stopped early: no better test accuracy in the last {patience} epochs"
        ));
    }
    if let (Some(saved), false) = (&saved, quiet) {
        out(&format!(
            "saved {} (epoch {}, test_acc {:.4})",
            saved.path.display(),
            saved.record.epoch,
            saved.record.test_acc
        ));
    }
    if let Some(path) = &plot {
        let t = &config.train;
        let title = format!(
            "{}; {} lr {}, batch {}",
            printer.net,
            t.optimizer.name(),
            Compact(t.lr),
            t.batch_size
        );
        if let Err(err) = write_learning_curves(path, &summary.epochs, &title) {
            return fail(err);
        }
        if !quiet {
            out(&format!("plot: {}", path.display()));
        }
    }
    out(&final_line(&summary));
    ExitCode::SUCCESS
}

/// The flags that set what a diverging run's message blames.
const FLAG_NAMES: SettingNames = SettingNames {
    lr: "--lr",
    weight_decay: "--weight-decay",
    init_std: "--weight-init-std",
    init: "--init",
};

/// Writes a line to stdout; a closed pipe is not worth a panic.
fn out(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Prints the run: a header, one line per epoch, and a progress bar within each epoch when stdout
/// is a terminal.
struct Printer<'a> {
    config: &'a RunConfig,
    quiet: bool,
    /// The network's description, for the plot's title.
    net: String,
    terminal: bool,
    bar: Option<ProgressBar>,
}

impl Printer<'_> {
    fn clear_bar(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Printer<'_> {
    fn start(&mut self, plan: &Plan) {
        if self.quiet {
            return;
        }
        let t = &self.config.train;
        out(&format!(
            "train: {} lr {} ({} schedule), batch {} ({} sampling{}), {} iterations, {} per epoch, seed {}, {}",
            t.optimizer.name(),
            Compact(t.lr),
            t.schedule.name(),
            plan.batch_size,
            t.sampling.name(),
            match t.augment {
                Augment::None => String::new(),
                a => format!(", augment {a}"),
            },
            plan.iters,
            plan.iters_per_epoch,
            t.seed,
            self.config.dtype.name(),
        ));
    }

    fn epoch_start(&mut self, epoch: usize, steps: usize) {
        if self.quiet || !self.terminal {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stdout());
        if let Ok(style) = ProgressStyle::with_template(
            "epoch {prefix:>2} [{bar:40}] {pos}/{len} iterations, {eta} left",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(epoch.to_string());
        self.bar = Some(bar);
    }

    fn step(&mut self, done: usize) {
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
        }
    }

    fn epoch_end(&mut self, report: &EpochReport) {
        self.clear_bar();
        if !self.quiet {
            out(&epoch_line(report));
        }
    }
}

impl RunObserver for Printer<'_> {
    fn loaded(&mut self, data: &DataInfo, net: &str) {
        self.net = net.to_owned();
        if self.quiet {
            return;
        }
        out(&format!(
            "data: {}: {} training and {} test images of {}x{}, {} classes",
            data.dir.display(),
            data.train_size,
            data.test_size,
            data.image_shape.0,
            data.image_shape.1,
            data.classes
        ));
        out(&format!("net: {net}"));
    }
}

/// `bp-train eval`: the model, the data, the accuracy (and whether training reported the same),
/// the per-class table and the confusion matrix.
fn eval(args: &EvalArgs) -> ExitCode {
    let data_dir = resolve_data_dir(args.data_dir.as_deref());
    if let Err(message) = outputs::check_eval(args, &data_dir) {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let outcome = match evaluate_file(
        &args.model,
        &data_dir,
        mib_bytes(args.max_data_mib),
        args.predictions.as_deref(),
    ) {
        Ok(outcome) => outcome,
        Err(err) => return fail(err),
    };
    let e = &outcome.evaluation;
    let d = &outcome.data;
    out(&format!(
        "model: {}: {}",
        args.model.display(),
        outcome.description
    ));
    if let Some(t) = &outcome.info.training {
        out(&format!(
            "trained: epoch {}, iteration {}: loss {:.4}, train_acc {:.4}, test_acc {:.4}",
            t.epoch, t.iter, t.loss, t.train_acc, t.test_acc
        ));
    }
    out(&format!(
        "data: {}: {} test images of {}x{}, {} classes",
        d.dir.display(),
        d.test_size,
        d.image_shape.0,
        d.image_shape.1,
        d.classes
    ));
    let mut line = format!(
        "test_acc={:.4} ({} of {} correct)",
        e.accuracy(),
        e.correct(),
        e.total()
    );
    match &outcome.info.training {
        Some(t) if t.test_acc == e.accuracy() => line.push_str(", as training reported"),
        Some(t) => line.push_str(&format!("; training reported test_acc={:.4}", t.test_acc)),
        None => {}
    }
    out(&line);
    if let Some(path) = &args.predictions {
        out(&format!("predictions: {}", path.display()));
    }
    out("");
    out(e.table().trim_end());
    ExitCode::SUCCESS
}

/// `bp-train predict`: one line per image with its class and the most probable classes; an image
/// that cannot be read is an error on stderr, and the others are still classified.
fn predict(args: &PredictArgs) -> ExitCode {
    let model = match AnyModel::load(&args.model) {
        Ok(model) => model,
        Err(err) => return fail(err),
    };
    let info = model.info();
    out(&format!(
        "model: {}: {}, input {}x{}",
        args.model.display(),
        model.describe(),
        info.image_shape.0,
        info.image_shape.1
    ));
    let results = match &model {
        AnyModel::F32(m) => classify_images(m, &args.model, &args.images, args.fit),
        AnyModel::F64(m) => classify_images(m, &args.model, &args.images, args.fit),
    };
    let names: Vec<String> = args
        .images
        .iter()
        .map(|p| format!("{}:", p.display()))
        .collect();
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let mut failed = false;
    for (name, result) in names.iter().zip(results) {
        let p = match result {
            Ok(p) => p,
            Err(err) => {
                failed = true;
                eprintln!("error: {:#}", anyhow::Error::from(err));
                continue;
            }
        };
        let top: Vec<String> = p
            .top(args.top)
            .iter()
            .map(|(class, prob)| format!("{class} {prob:.4}"))
            .collect();
        let mut notes = Vec::new();
        if p.inverted {
            notes.push("inverted".to_owned());
        }
        let (w, h) = p.source_size;
        if (h, w) != info.image_shape {
            notes.push(format!("scaled from {w}x{h}"));
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!("  ({})", notes.join(", "))
        };
        out(&format!(
            "{name:<width$} {}  top: {}{notes}",
            p.class,
            top.join(", ")
        ));
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `bp-train serve`: loads the model, listens, prints the address to open, and serves until
/// Ctrl-C, logging one line per request to stderr.
fn serve(args: &ServeArgs) -> ExitCode {
    let model = match AnyModel::load(&args.model) {
        Ok(model) => model,
        Err(err) => return fail(err),
    };
    let description = model.describe();
    let server = match serve::Server::bind(model, &args.model, args.addr, args.fit, |line| {
        eprintln!("{line}");
    }) {
        Ok(server) => server,
        Err(err) => {
            eprintln!("error: cannot listen on {}: {err}", args.addr);
            return ExitCode::FAILURE;
        }
    };
    let addr = match server.local_addr() {
        Ok(addr) => addr,
        Err(err) => return fail(err),
    };
    out(&format!("model: {}: {description}", args.model.display()));
    let host = if addr.ip().is_unspecified() {
        "localhost".to_owned()
    } else {
        addr.ip().to_string()
    };
    let url = if addr.is_ipv6() && host != "localhost" {
        format!("http://[{host}]:{}/", addr.port())
    } else {
        format!("http://{host}:{}/", addr.port())
    };
    out(&format!("serving on {addr}: open {url} (Ctrl-C stops)"));
    match server.run() {
        Ok(()) => {
            eprintln!("stopped");
            ExitCode::SUCCESS
        }
        Err(err) => fail(err),
    }
}
