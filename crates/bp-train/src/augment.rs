//! Data augmentation in the batch gather: each training sample is moved by a few pixels, a
//! different random shift every time it is drawn, so that the network learns digits that sit
//! anywhere near the middle of the frame rather than the exact pixels of the training set.
//!
//! The shifts are drawn from a stream of their own ([`Stream::Augment`](crate::Stream::Augment)),
//! so a run with augmentation draws the same batches as the same run without it. The batch buffer
//! is shifted in place: nothing is allocated.

use std::fmt;
use std::str::FromStr;

use ndarray::NdFloat;
use rand::RngExt;
use rand_xoshiro::Xoshiro256PlusPlus;

/// How training samples are changed before each step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Augment {
    /// Samples as they are.
    #[default]
    None,
    /// Each sample moved by `dy` rows and `dx` columns, each drawn uniformly from `-n..=n`
    /// (`shift:n`); pixels moved in from outside the image are 0, the background of MNIST.
    Shift(usize),
}

impl Augment {
    /// How the command line spells it: `none` or `shift:N`.
    ///
    /// ```
    /// use bp_train::Augment;
    ///
    /// assert_eq!("shift:2".parse::<Augment>(), Ok(Augment::Shift(2)));
    /// assert_eq!(Augment::Shift(2).to_string(), "shift:2");
    /// assert!("shift:x".parse::<Augment>().is_err());
    /// ```
    pub const SYNTAX: &'static str = "none or shift:N (random shifts of up to N pixels)";

    /// The largest shift, in pixels.
    pub fn max_shift(self) -> usize {
        match self {
            Augment::None => 0,
            Augment::Shift(n) => n,
        }
    }
}

impl fmt::Display for Augment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Augment::None => f.write_str("none"),
            Augment::Shift(n) => write!(f, "shift:{n}"),
        }
    }
}

impl FromStr for Augment {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not an augmentation; give {}", Augment::SYNTAX);
        match s.trim().split_once(':') {
            None if s.trim() == "none" => Ok(Augment::None),
            Some(("shift", n)) => match n.trim().parse::<usize>() {
                Ok(0) => Err(format!(
                    "`{s}`: a shift of 0 pixels changes nothing; give shift:1 or more"
                )),
                Ok(n) => Ok(Augment::Shift(n)),
                Err(_) => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

/// One sample's move: `dy` rows down and `dx` columns right (negative: up, left).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Shift {
    pub(crate) dy: isize,
    pub(crate) dx: isize,
}

/// Draws one shift per sample into `shifts`, each coordinate uniform in `-max..=max`.
pub(crate) fn draw_shifts(max: usize, rng: &mut Xoshiro256PlusPlus, shifts: &mut [Shift]) {
    // A shift as large as the image blanks it; larger ones do no more.
    let max = i32::try_from(max).unwrap_or(i32::MAX);
    for s in shifts {
        s.dy = rng.random_range(-max..=max) as isize;
        s.dx = rng.random_range(-max..=max) as isize;
    }
}

/// Moves each sample of `batch` (row-major, `shifts.len()` samples of `planes` planes of
/// `height x width` pixels each) by its shift, in place:
/// `out[c, y, x] = in[c, y - dy, x - dx]`, and 0 where `(y - dy, x - dx)` is outside the image.
///
/// # Panics
///
/// If `batch` does not hold `shifts.len()` samples of `planes x height x width` elements.
#[track_caller]
pub(crate) fn shift_batch<A: NdFloat>(
    batch: &mut [A],
    planes: usize,
    (height, width): (usize, usize),
    shifts: &[Shift],
) {
    let plane = height * width;
    assert_eq!(
        batch.len(),
        shifts.len() * planes * plane,
        "shift_batch: a batch of {} elements is not {} samples of {planes} x {height} x {width}",
        batch.len(),
        shifts.len()
    );
    if plane == 0 {
        return;
    }
    for (sample, &shift) in batch.chunks_exact_mut(planes * plane).zip(shifts) {
        for image in sample.chunks_exact_mut(plane) {
            shift_plane(image, height, width, shift);
        }
    }
}

/// [`shift_batch`] for one `height x width` plane.
fn shift_plane<A: NdFloat>(image: &mut [A], height: usize, width: usize, Shift { dy, dx }: Shift) {
    let (ady, adx) = (dy.unsigned_abs(), dx.unsigned_abs());
    if ady >= height || adx >= width {
        image.fill(A::zero());
        return;
    }
    // Rows: copied in the order that reads each row before it is overwritten.
    let kept = height - ady;
    if dy > 0 {
        for y in (0..kept).rev() {
            image.copy_within(y * width..(y + 1) * width, (y + ady) * width);
        }
        image[..ady * width].fill(A::zero());
    } else if dy < 0 {
        for y in 0..kept {
            image.copy_within((y + ady) * width..(y + ady + 1) * width, y * width);
        }
        image[kept * width..].fill(A::zero());
    }
    // Columns, within each row (`copy_within` handles the overlap).
    if dx != 0 {
        for row in image.chunks_exact_mut(width) {
            if dx > 0 {
                row.copy_within(..width - adx, adx);
                row[..adx].fill(A::zero());
            } else {
                row.copy_within(adx.., 0);
                row[width - adx..].fill(A::zero());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// The shift by the definition, pixel by pixel.
    fn shifted(image: &[f32], h: usize, w: usize, dy: isize, dx: isize) -> Vec<f32> {
        let mut out = vec![0.0; h * w];
        for y in 0..h as isize {
            for x in 0..w as isize {
                let (sy, sx) = (y - dy, x - dx);
                if (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx) {
                    out[(y * w as isize + x) as usize] = image[(sy * w as isize + sx) as usize];
                }
            }
        }
        out
    }

    #[test]
    fn a_shift_moves_the_pixels_and_fills_with_zero() {
        // 3 x 4: 1..=12.
        let mut image: Vec<f32> = (1..=12).map(|v| v as f32).collect();
        shift_plane(&mut image, 3, 4, Shift { dy: 1, dx: -1 });
        #[rustfmt::skip]
        assert_eq!(image, [
            0.0, 0.0, 0.0, 0.0,
            2.0, 3.0, 4.0, 0.0,
            6.0, 7.0, 8.0, 0.0,
        ]);
    }

    /// Every shift of several shapes, against the definition; shifts as large as the image or
    /// larger leave it blank.
    #[test]
    fn every_shift_matches_the_definition() {
        for (h, w) in [(1, 1), (3, 4), (5, 2), (28, 28)] {
            let image: Vec<f32> = (0..h * w).map(|v| v as f32 + 1.0).collect();
            let (h, w) = (h as isize, w as isize);
            for dy in -h - 1..=h + 1 {
                for dx in -w - 1..=w + 1 {
                    let mut got = image.clone();
                    shift_plane(&mut got, h as usize, w as usize, Shift { dy, dx });
                    assert_eq!(
                        got,
                        shifted(&image, h as usize, w as usize, dy, dx),
                        "{h} x {w}, shift ({dy}, {dx})"
                    );
                }
            }
        }
    }

    /// Each sample and each of its planes take the sample's own shift.
    #[test]
    fn a_batch_shifts_each_sample_by_its_own_shift() {
        let (planes, h, w) = (2, 3, 3);
        let batch: Vec<f32> = (0..3 * planes * h * w).map(|v| v as f32).collect();
        let shifts = [
            Shift { dy: 0, dx: 0 },
            Shift { dy: -1, dx: 2 },
            Shift { dy: 2, dx: 1 },
        ];
        let mut got = batch.clone();
        shift_batch(&mut got, planes, (h, w), &shifts);
        for (s, shift) in shifts.iter().enumerate() {
            for c in 0..planes {
                let at = (s * planes + c) * h * w;
                let want = shifted(&batch[at..at + h * w], h, w, shift.dy, shift.dx);
                assert_eq!(&got[at..at + h * w], &want[..], "sample {s}, plane {c}");
            }
        }
    }

    /// The draws cover `-n..=n` in both directions and nothing outside, and the same seed draws
    /// the same shifts.
    #[test]
    fn shifts_are_uniform_in_range_and_seeded() {
        let mut shifts = vec![Shift::default(); 5000];
        draw_shifts(2, &mut Xoshiro256PlusPlus::seed_from_u64(7), &mut shifts);
        for d in -2..=2 {
            let dy = shifts.iter().filter(|s| s.dy == d).count();
            let dx = shifts.iter().filter(|s| s.dx == d).count();
            // 1000 expected of each; 5 standard deviations is about 140.
            assert!(
                (860..1140).contains(&dy) && (860..1140).contains(&dx),
                "{d}: {dy} {dx}"
            );
        }
        assert!(shifts.iter().all(|s| s.dy.abs() <= 2 && s.dx.abs() <= 2));
        let mut again = vec![Shift::default(); 5000];
        draw_shifts(2, &mut Xoshiro256PlusPlus::seed_from_u64(7), &mut again);
        assert_eq!(shifts, again);
    }

    #[test]
    fn the_flag_parses_and_refuses() {
        assert_eq!("none".parse::<Augment>(), Ok(Augment::None));
        assert_eq!(" shift:3 ".parse::<Augment>(), Ok(Augment::Shift(3)));
        for bad in [
            "",
            "shift",
            "shift:",
            "shift:-1",
            "shift:0",
            "rotate:2",
            "shift:2.5",
        ] {
            let err = bad.parse::<Augment>().unwrap_err();
            assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
        }
    }
}
