//! The crate's error type.

use std::io;
use std::path::PathBuf;

use bp_data::DataError;

/// What can stop a training run: the outside world (data and metrics files) or a diverging loss.
///
/// Programming errors (a net whose input size does not fit the data, a zero batch size passed to
/// the library) panic instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
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

    /// The loss became NaN or infinite, or stayed near its ceiling (see
    /// [`train`](crate::train())): the run stopped at that iteration.
    #[error("{}", diverged_message(*iter, *epoch, *loss, *lr))]
    Diverged {
        /// The iteration (from 1) at which the run was stopped.
        iter: usize,
        /// The epoch (from 1) it belongs to.
        epoch: usize,
        /// That iteration's data loss.
        loss: f64,
        /// The learning rate of that iteration.
        lr: f64,
    },

    /// The model file could not be written; the message names it.
    #[error(transparent)]
    Model(#[from] crate::model_file::ModelError),

    /// The metrics CSV file could not be created or written.
    #[error("cannot write the metrics file {}", path.display())]
    Metrics {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

fn diverged_message(iter: usize, epoch: usize, loss: f64, lr: f64) -> String {
    let what = if loss.is_finite() {
        format!(
            "the loss has stayed above {:.2} for {} iterations in a row (now {loss:.4}; its ceiling is \
             16.12: the net is confidently wrong)",
            crate::train::SATURATED_LOSS,
            crate::train::SATURATED_STEPS
        )
    } else {
        format!("the loss is {loss}")
    };
    format!(
        "training diverged at iteration {iter} (epoch {epoch}): {what}; try a smaller learning rate \
         (it was {lr})"
    )
}
