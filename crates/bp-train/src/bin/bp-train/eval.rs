//! Using a saved model: its accuracy on a test set, per class and as a confusion matrix
//! ([`evaluate_file`]), and the classes of image files ([`classify_images`]).

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use bp_data::{DataError, MnistOptions, Split, check_data_dir, load_mnist_split};
use bp_loss::softmax;
use bp_train::model_file::{AnyModel, Model, ModelElement, ModelError, ModelInfo};
use bp_train::{EVAL_CHUNK, Network, argmax};
use ndarray::{Array2, ArrayD, ArrayViewD, Axis, IxDyn, NdFloat, Slice};

use crate::image::{Fit, ImageError, Prepared, load_input};

/// What can stop an evaluation or a prediction.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// The model file could not be read; the message names it.
    #[error(transparent)]
    Model(#[from] ModelError),

    /// The data set could not be loaded; the message names the file.
    #[error(transparent)]
    Data(#[from] DataError),

    /// The data set's images are not the size the model takes.
    #[error(
        "the model {} takes {}x{} images, but the images in {} are {}x{}",
        model.display(), model_shape.0, model_shape.1, dir.display(), data_shape.0, data_shape.1
    )]
    ImageShape {
        /// The model file.
        model: PathBuf,
        /// Its input shape (rows, columns).
        model_shape: (usize, usize),
        /// The data directory.
        dir: PathBuf,
        /// The data set's image shape.
        data_shape: (usize, usize),
    },

    /// The data set has labels the model has no class for.
    #[error(
        "the test set in {} has {data_classes} classes, but the model {} has only {model_classes}",
        dir.display(), model.display()
    )]
    Classes {
        /// The model file.
        model: PathBuf,
        /// The model's class count.
        model_classes: usize,
        /// The data directory.
        dir: PathBuf,
        /// The data set's class count (its largest label plus one).
        data_classes: usize,
    },

    /// The test set holds no images.
    #[error("the test set in {} holds no images", dir.display())]
    EmptyTestSet {
        /// The data directory.
        dir: PathBuf,
    },

    /// The model's probabilities for some test images are NaN: its scores overflow the element
    /// type. Its accuracy would count made-up classes, so there is none.
    #[error(
        "the model {} gives NaN scores for {count} of the {total} test images in {} (the first is \
         image {first}): its weights are too large for {dtype}, so it has no accuracy",
        model.display(), dir.display()
    )]
    NanScores {
        /// The model file.
        model: PathBuf,
        /// The data directory.
        dir: PathBuf,
        /// The test images with NaN probabilities.
        count: usize,
        /// The test images.
        total: usize,
        /// The index of the first.
        first: usize,
        /// The model's element type.
        dtype: &'static str,
    },

    /// The predictions CSV file could not be written.
    #[error("cannot write the predictions file {}", path.display())]
    Predictions {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

/// Counts of true against predicted classes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    /// `confusion[t][p]`: the samples of class `t` predicted as `p`.
    confusion: Vec<Vec<usize>>,
}

impl Evaluation {
    /// The evaluation of the given predictions.
    ///
    /// # Panics
    ///
    /// If the slices differ in length or a class is not below `classes`.
    #[track_caller]
    pub fn new(classes: usize, labels: &[usize], predicted: &[usize]) -> Self {
        assert_eq!(
            labels.len(),
            predicted.len(),
            "Evaluation::new: one prediction per label"
        );
        let mut confusion = vec![vec![0; classes]; classes];
        for (&t, &p) in labels.iter().zip(predicted) {
            assert!(
                t < classes && p < classes,
                "Evaluation::new: class {t} or {p} of {classes}"
            );
            confusion[t][p] += 1;
        }
        Evaluation { confusion }
    }

    /// The number of classes.
    pub fn classes(&self) -> usize {
        self.confusion.len()
    }

    /// `confusion()[t][p]`: the samples of class `t` predicted as `p`.
    #[cfg(test)]
    pub fn confusion(&self) -> &[Vec<usize>] {
        &self.confusion
    }

    /// The number of samples.
    pub fn total(&self) -> usize {
        self.confusion.iter().flatten().sum()
    }

    /// The number of correctly classified samples.
    pub fn correct(&self) -> usize {
        (0..self.classes()).map(|c| self.confusion[c][c]).sum()
    }

    /// The fraction of samples classified correctly (0 for none).
    pub fn accuracy(&self) -> f64 {
        ratio(self.correct(), self.total())
    }

    /// The samples of class `c`.
    pub fn class_total(&self, c: usize) -> usize {
        self.confusion[c].iter().sum()
    }

    /// The fraction of the samples of class `c` classified as `c` (0 if there are none).
    pub fn class_accuracy(&self, c: usize) -> f64 {
        ratio(self.confusion[c][c], self.class_total(c))
    }

    /// The per-class table and the confusion matrix, right-aligned in columns.
    ///
    /// (See the test `the_table_of_a_small_evaluation` for an example.)
    pub fn table(&self) -> String {
        let k = self.classes();
        let mut s = String::new();
        let count_w = self.total().to_string().len().max("correct".len());
        let class_w = k.saturating_sub(1).to_string().len().max("class".len());
        let line = |s: &mut String, class: &str, n: usize, correct: usize, acc: f64| {
            writeln!(
                s,
                "{class:>class_w$}  {n:>count_w$}  {correct:>count_w$}  {acc:>8.4}"
            )
            .expect("writing to a String cannot fail");
        };
        writeln!(
            s,
            "{:>class_w$}  {:>count_w$}  {:>count_w$}  {:>8}",
            "class", "images", "correct", "accuracy"
        )
        .expect("writing to a String cannot fail");
        for c in 0..k {
            line(
                &mut s,
                &c.to_string(),
                self.class_total(c),
                self.confusion[c][c],
                self.class_accuracy(c),
            );
        }
        line(&mut s, "all", self.total(), self.correct(), self.accuracy());

        s.push_str("\nconfusion matrix (rows: true class, columns: predicted class)\n");
        let cell_w = self
            .confusion
            .iter()
            .flatten()
            .max()
            .map_or(1, |m| m.to_string().len())
            .max(k.saturating_sub(1).to_string().len());
        s.push_str(&" ".repeat(class_w));
        for p in 0..k {
            write!(s, "  {p:>cell_w$}").expect("writing to a String cannot fail");
        }
        s.push('\n');
        for (t, row) in self.confusion.iter().enumerate() {
            write!(s, "{t:>class_w$}").expect("writing to a String cannot fail");
            for n in row {
                write!(s, "  {n:>cell_w$}").expect("writing to a String cannot fail");
            }
            s.push('\n');
        }
        s
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// The predicted class (the first maximum score, as [`Network::accuracy`] counts) and the softmax
/// probabilities of every row of `x`, predicted in chunks of [`EVAL_CHUNK`] rows as training
/// evaluates, so that the accuracy is exactly the one training reported.
pub fn predict_all<A: NdFloat>(net: &Network<A>, x: ArrayViewD<'_, A>) -> (Vec<usize>, Array2<A>) {
    let n = x.shape()[0];
    let mut classes = Vec::with_capacity(n);
    let mut probs: Option<Array2<A>> = None;
    let mut start = 0;
    while start < n {
        let end = (start + EVAL_CHUNK).min(n);
        let rows = x.slice_axis(Axis(0), Slice::from(start..end)).to_owned();
        let scores = net.predict(rows.into_dyn());
        classes.extend(
            scores
                .rows()
                .into_iter()
                .map(|r| argmax(r.iter().copied()).unwrap_or(0)),
        );
        let p = softmax(scores.view());
        probs
            .get_or_insert_with(|| Array2::zeros((0, p.ncols())))
            .append(Axis(0), p.view())
            .expect("every chunk has the same number of classes");
        start = end;
    }
    (classes, probs.unwrap_or_else(|| Array2::zeros((0, 0))))
}

/// The test set an evaluation ran on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestSetInfo {
    /// The data directory.
    pub dir: PathBuf,
    /// Test images.
    pub test_size: usize,
    /// Rows and columns of each image.
    pub image_shape: (usize, usize),
    /// The number of classes: the model's.
    pub classes: usize,
}

/// The result of [`evaluate_file`].
#[derive(Clone, Debug)]
pub struct EvalOutcome {
    /// The model's info.
    pub info: ModelInfo,
    /// The model's description (see [`AnyModel::describe`]).
    pub description: String,
    /// The test set evaluated on.
    pub data: TestSetInfo,
    /// The counts.
    pub evaluation: Evaluation,
}

/// Loads a model file and the test set in `data_dir` (its two test files only: the training files
/// need not be there, nor be sound), and evaluates the model on it (through the same inference
/// path, in the same chunks, as training's evaluation). With `predictions`, also writes one CSV
/// line per test image: `index,label,predicted,p0,p1,...`.
///
/// The data directory is checked before anything else, and the test set's headers against
/// `max_data_bytes` before its data is read.
///
/// # Errors
///
/// [`EvalError::Model`] and [`EvalError::Data`] for files that cannot be read,
/// [`EvalError::ImageShape`] and [`EvalError::Classes`] if the model does not fit the data,
/// [`EvalError::EmptyTestSet`], [`EvalError::Predictions`].
pub fn evaluate_file(
    model: &Path,
    data_dir: &Path,
    max_data_bytes: u64,
    predictions: Option<&Path>,
) -> Result<EvalOutcome, EvalError> {
    check_data_dir(data_dir)?;
    let any = AnyModel::load(model)?;
    let description = any.describe();
    let mut outcome = match any {
        AnyModel::F32(m) => evaluate(&m, model, data_dir, max_data_bytes, predictions),
        AnyModel::F64(m) => evaluate(&m, model, data_dir, max_data_bytes, predictions),
    }?;
    outcome.description = description;
    Ok(outcome)
}

fn evaluate<A: ModelElement>(
    model: &Model<A>,
    path: &Path,
    data_dir: &Path,
    max_data_bytes: u64,
    predictions: Option<&Path>,
) -> Result<EvalOutcome, EvalError> {
    // The model's class count, as training checked its labels: a test label the model has no class
    // for is refused.
    let opts = MnistOptions {
        num_classes: Some(model.net.classes()),
        max_bytes: max_data_bytes,
        ..MnistOptions::default()
    };
    let test = match load_mnist_split::<A>(data_dir, Split::Test, &opts) {
        Err(DataError::LabelOutOfRange { label, .. }) => {
            return Err(EvalError::Classes {
                model: path.to_path_buf(),
                model_classes: model.net.classes(),
                dir: data_dir.to_path_buf(),
                data_classes: label + 1,
            });
        }
        other => other?,
    };
    let info = &model.info;
    if test.image_shape != info.image_shape {
        return Err(EvalError::ImageShape {
            model: path.to_path_buf(),
            model_shape: info.image_shape,
            dir: data_dir.to_path_buf(),
            data_shape: test.image_shape,
        });
    }
    let t_test = test.t.to_index();
    if t_test.is_empty() {
        return Err(EvalError::EmptyTestSet {
            dir: data_dir.to_path_buf(),
        });
    }
    let (predicted, probs) = predict_all(&model.net, test.x.view());
    let nan: Vec<usize> = probs
        .rows()
        .into_iter()
        .enumerate()
        .filter(|(_, row)| row.iter().any(|p| p.is_nan()))
        .map(|(i, _)| i)
        .collect();
    if let Some(&first) = nan.first() {
        return Err(EvalError::NanScores {
            model: path.to_path_buf(),
            dir: data_dir.to_path_buf(),
            count: nan.len(),
            total: t_test.len(),
            first,
            dtype: A::DTYPE.name(),
        });
    }
    if let Some(csv) = predictions {
        write_predictions(csv, &t_test, &predicted, &probs).map_err(|source| {
            EvalError::Predictions {
                path: csv.to_path_buf(),
                source,
            }
        })?;
    }
    Ok(EvalOutcome {
        info: info.clone(),
        description: String::new(),
        data: TestSetInfo {
            dir: data_dir.to_path_buf(),
            test_size: t_test.len(),
            image_shape: test.image_shape,
            classes: test.num_classes,
        },
        evaluation: Evaluation::new(model.net.classes(), &t_test, &predicted),
    })
}

/// Writes `index,label,predicted,p0,...` lines, the probabilities in the model's precision.
fn write_predictions<A: NdFloat>(
    path: &Path,
    labels: &[usize],
    predicted: &[usize],
    probs: &Array2<A>,
) -> io::Result<()> {
    bp_train::write_atomic(path, |w| {
        let header: Vec<String> = (0..probs.ncols()).map(|c| format!("p{c}")).collect();
        writeln!(w, "index,label,predicted,{}", header.join(","))?;
        for (i, ((t, p), row)) in labels.iter().zip(predicted).zip(probs.rows()).enumerate() {
            write!(w, "{i},{t},{p}")?;
            for v in row {
                write!(w, ",{v}")?;
            }
            writeln!(w)?;
        }
        Ok(())
    })
}

/// The class of one image, with the probability of every class.
#[derive(Clone, Debug, PartialEq)]
pub struct ImagePrediction {
    /// The predicted class (the highest probability).
    pub class: usize,
    /// The probability of each class.
    pub probabilities: Vec<f64>,
    /// Whether the image was inverted (it was a dark digit on a light background).
    pub inverted: bool,
    /// The width and height of the image as read.
    pub source_size: (usize, usize),
}

impl ImagePrediction {
    /// The `k` most probable classes with their probabilities, most probable first (ties to the
    /// lower class).
    pub fn top(&self, k: usize) -> Vec<(usize, f64)> {
        let mut ranked: Vec<(usize, f64)> =
            self.probabilities.iter().copied().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(k);
        ranked
    }
}

/// Why an image has no class.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    /// The image cannot be read; the message names it.
    #[error(transparent)]
    Image(#[from] ImageError),

    /// The model's probabilities for the image are NaN: its scores overflow the element type.
    /// Any class would be made up.
    #[error(
        "{}: the model {} gives NaN scores for this image: its weights are too large for {dtype}",
        image.display(), model.display()
    )]
    NanScores {
        /// The image.
        image: PathBuf,
        /// The model file.
        model: PathBuf,
        /// The model's element type.
        dtype: &'static str,
    },
}

/// Classifies image files (PNG or PNM, prepared as [`crate::image::prepare_with`] describes,
/// fitted as `fit` says) with a model read from `model_path`: one result per path, in order; an
/// image that cannot be read, or for which the model gives NaN scores, is an error naming it,
/// and does not stop the others.
pub fn classify_images<A: ModelElement>(
    model: &Model<A>,
    model_path: &Path,
    paths: &[PathBuf],
    fit: Fit,
) -> Vec<Result<ImagePrediction, PredictError>> {
    paths
        .iter()
        .map(|path| {
            let input = load_input(path, model.info.image_shape, fit)?;
            classify(model, &input).ok_or_else(|| PredictError::NanScores {
                image: path.clone(),
                model: model_path.to_path_buf(),
                dtype: A::DTYPE.name(),
            })
        })
        .collect()
}

/// The class and the probabilities of one image prepared for `model` (see
/// [`crate::image::prepare_with`]); `None` if the model's probabilities are NaN (its scores
/// overflow the element type, so any class would be made up).
///
/// # Panics
///
/// If `input` does not hold the model's input size.
#[track_caller]
pub fn classify<A: ModelElement>(model: &Model<A>, input: &Prepared) -> Option<ImagePrediction> {
    let mut sample = vec![1];
    sample.extend(model.net.input_shape());
    let x = ArrayD::from_shape_vec(
        IxDyn(&sample),
        input
            .pixels
            .iter()
            .map(|&v| A::from(v).expect("a pixel converts"))
            .collect(),
    )
    .expect("prepare returns the model's input size");
    let scores = model.net.predict(x);
    let class = argmax(scores.row(0).iter().copied()).unwrap_or(0);
    let probabilities: Vec<f64> = softmax(scores.view())
        .row(0)
        .iter()
        .map(|p| p.to_f64().unwrap_or(f64::NAN))
        .collect();
    if probabilities.iter().any(|p| p.is_nan()) {
        return None;
    }
    Some(ImagePrediction {
        class,
        probabilities,
        inverted: input.inverted,
        source_size: input.source_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_accuracies() {
        let e = Evaluation::new(3, &[0, 0, 1, 2, 2, 2], &[0, 2, 1, 2, 2, 0]);
        assert_eq!(e.total(), 6);
        assert_eq!(e.correct(), 4);
        assert_eq!(e.class_total(2), 3);
        assert_eq!(e.class_accuracy(0), 0.5);
        assert_eq!(e.confusion()[2], [1, 0, 2]);
        let empty = Evaluation::new(2, &[], &[]);
        assert_eq!(empty.accuracy(), 0.0);
        assert_eq!(empty.class_accuracy(1), 0.0);
    }

    #[test]
    fn the_table_stays_aligned_for_large_counts() {
        let labels: Vec<usize> = (0..12_000).map(|i| i % 12).collect();
        let e = Evaluation::new(12, &labels, &labels);
        let table = e.table();
        let widths: Vec<usize> = table.lines().take(14).map(str::len).collect();
        assert!(widths.iter().all(|&w| w == widths[0]), "{table}");
        let matrix: Vec<&str> = table.lines().skip(16).collect();
        assert_eq!(matrix.len(), 13);
        assert!(matrix.iter().all(|l| l.len() == matrix[0].len()), "{table}");
        assert!(matrix[12].starts_with("   11"), "{table}");
    }

    #[test]
    fn top_ranks_by_probability() {
        let p = ImagePrediction {
            class: 2,
            probabilities: vec![0.1, 0.2, 0.6, 0.1],
            inverted: false,
            source_size: (1, 1),
        };
        assert_eq!(p.top(3), [(2, 0.6), (1, 0.2), (0, 0.1)]);
        assert_eq!(p.top(10).len(), 4);
    }

    #[test]
    fn the_table_of_a_small_evaluation() {
        let e = Evaluation::new(2, &[0, 0, 1, 1], &[0, 1, 1, 1]);
        assert_eq!(e.accuracy(), 0.75);
        assert_eq!(
            e.table(),
            "\
class   images  correct  accuracy
    0        2        1    0.5000
    1        2        2    1.0000
  all        4        3    0.7500

confusion matrix (rows: true class, columns: predicted class)
       0  1
    0  1  1
    1  0  2
"
        );
    }
}
