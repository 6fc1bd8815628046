//! The `bp-train` command: trains a network on MNIST and prints its progress; see `--help`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use bp_train::cli::{Cli, Parsed, one_line_error};
use bp_train::{
    DataInfo, Dtype, EpochReport, Observer, Plan, RunConfig, RunObserver, epoch_line, final_line,
    run,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

fn main() -> ExitCode {
    let Parsed { run: config, quiet } = match Cli::parse_config_from(std::env::args_os()) {
        Ok(parsed) => parsed,
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
    let mut printer = Printer {
        config: &config,
        quiet,
        bar: None,
        terminal: std::io::stdout().is_terminal(),
    };
    let result = match config.dtype {
        Dtype::F32 => run::<f32>(&config, &mut printer).map(|o| o.summary),
        Dtype::F64 => run::<f64>(&config, &mut printer).map(|o| o.summary),
    };
    printer.clear_bar();
    match result {
        Ok(summary) => {
            out(&final_line(&summary));
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {:#}", anyhow::Error::from(err));
            ExitCode::FAILURE
        }
    }
}

/// Writes a line to stdout; a closed pipe is not worth a panic.
fn out(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Prints the run: a header, one line per epoch, and a progress bar within each epoch when stdout
/// is a terminal.
struct Printer<'a> {
    config: &'a RunConfig,
    quiet: bool,
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
            "train: {} lr {} ({} schedule), batch {} ({} sampling), {} iterations, {} per epoch, seed {}, {}",
            t.optimizer.name(),
            t.lr,
            t.schedule.name(),
            plan.batch_size,
            t.sampling.name(),
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
