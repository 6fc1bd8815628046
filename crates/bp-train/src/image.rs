//! Digit images for `bp-train predict`: PNG and PGM files read to grayscale and prepared like MNIST.
//!
//! [`read_image`] decodes a PNG (any colour type and bit depth, palette and alpha included) or a PGM
//! (`P2` plain or `P5` binary, 8 or 16 bits) to a [`GrayImage`] of values in `[0, 1]`, 0 black and 1
//! white, recognising the format by its first bytes, never by the file name. [`prepare`] then makes
//! the network's input the way MNIST's images are: a white digit on a black background (an image
//! whose border is mostly light is a dark digit on a light background, and is inverted), scaled to
//! the model's `rows x cols` by area averaging, row by row; or, with [`Fit::Mnist`], the digit's
//! bounding box scaled into the middle 20/28 and centred by its centre of mass, as MNIST's digits
//! were.
//!
//! Colour is turned to gray by the Rec. 601 luma `0.299 R + 0.587 G + 0.114 B`. Transparent pixels
//! are laid over a background that contrasts with the opaque ones (white under dark ink, black under
//! light ink), so that a digit drawn on a transparent canvas reads as drawn on paper of that colour.
//!
//! Every unreadable, truncated or malformed file is an [`ImageError`] naming the file.
//!
//! ```
//! use bp_train::image::{GrayImage, prepare};
//!
//! // A dark stroke on white paper, 4 x 4: inverted, then averaged down to 2 x 2.
//! let paper = GrayImage::new(4, 4, vec![
//!     1.0, 1.0, 1.0, 1.0,
//!     1.0, 0.0, 0.0, 1.0,
//!     1.0, 0.0, 0.0, 1.0,
//!     1.0, 1.0, 1.0, 1.0,
//! ]);
//! let input = prepare(&paper, (2, 2));
//! assert!(input.inverted);
//! assert_eq!(input.pixels, [0.25, 0.25, 0.25, 0.25]);
//! ```

use std::io::Cursor;
use std::path::{Path, PathBuf};

/// The largest image, in pixels, that is read: 2²⁶ (an 8192 x 8192 picture).
pub const MAX_PIXELS: usize = 1 << 26;

/// What can go wrong reading an image. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The file could not be read.
    #[error("cannot read the image {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The file is neither PNG nor PGM.
    #[error("{} is {found}; bp-train reads PNG and PGM (P2, P5) images", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
        /// What the file looks like, such as "a JPEG image" or "empty".
        found: String,
    },

    /// The PNG decoder refused the file.
    #[error("{} is not a valid PNG image", path.display())]
    Png {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: png::DecodingError,
    },

    /// The PGM file is malformed.
    #[error("{} is not a valid PGM image: {reason}", path.display())]
    Pgm {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The image has no pixels.
    #[error("the image {} is empty ({width} x {height} pixels)", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
        /// Its width.
        width: usize,
        /// Its height.
        height: usize,
    },

    /// The image has more than [`MAX_PIXELS`] pixels.
    #[error("the image {} is too large: {width} x {height} pixels (at most {MAX_PIXELS})", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its width.
        width: usize,
        /// Its height.
        height: usize,
    },
}

/// A grayscale image: values in `[0, 1]` (0 black, 1 white), row by row.
#[derive(Clone, Debug, PartialEq)]
pub struct GrayImage {
    width: usize,
    height: usize,
    pixels: Vec<f64>,
}

impl GrayImage {
    /// An image of the given size from its pixels, row by row.
    ///
    /// # Panics
    ///
    /// If there are not `width * height` pixels.
    #[track_caller]
    pub fn new(width: usize, height: usize, pixels: Vec<f64>) -> Self {
        assert_eq!(
            Some(pixels.len()),
            width.checked_mul(height),
            "GrayImage::new: {} pixels for a {width} x {height} image",
            pixels.len()
        );
        GrayImage {
            width,
            height,
            pixels,
        }
    }

    /// The width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The pixels, row by row.
    pub fn pixels(&self) -> &[f64] {
        &self.pixels
    }

    /// The mean of the pixels of the outermost rows and columns (0 for an empty image).
    pub fn border_mean(&self) -> f64 {
        let (w, h) = (self.width, self.height);
        let mut sum = 0.0;
        let mut count = 0usize;
        for y in 0..h {
            for x in 0..w {
                if y == 0 || y + 1 == h || x == 0 || x + 1 == w {
                    sum += self.pixels[y * w + x];
                    count += 1;
                }
            }
        }
        if count == 0 { 0.0 } else { sum / count as f64 }
    }

    /// Whether the image is a dark figure on a light background: its border is mostly light
    /// (mean above 0.5). MNIST digits are light on dark.
    pub fn is_dark_on_light(&self) -> bool {
        self.border_mean() > 0.5
    }

    /// The negative, `1 - v` for every pixel.
    #[must_use]
    pub fn inverted(&self) -> GrayImage {
        GrayImage {
            width: self.width,
            height: self.height,
            pixels: self.pixels.iter().map(|v| 1.0 - v).collect(),
        }
    }

    /// The image scaled to `rows x cols` by area averaging: each new pixel is the mean of the part
    /// of the image it covers (fractional pixels weighted by their covered area). The same size
    /// returns the image unchanged.
    ///
    /// # Panics
    ///
    /// If `rows` or `cols` is 0, or the image is empty.
    #[track_caller]
    #[must_use]
    pub fn resized(&self, rows: usize, cols: usize) -> GrayImage {
        assert!(
            rows > 0 && cols > 0 && self.width > 0 && self.height > 0,
            "GrayImage::resized: {} x {} to {cols} x {rows}",
            self.width,
            self.height
        );
        if (rows, cols) == (self.height, self.width) {
            return self.clone();
        }
        let wx = area_weights(self.width, cols);
        let wy = area_weights(self.height, rows);
        // Columns first, then rows.
        let mut across = vec![0.0; self.height * cols];
        for y in 0..self.height {
            let src = &self.pixels[y * self.width..(y + 1) * self.width];
            for (x, weights) in wx.iter().enumerate() {
                across[y * cols + x] = weights.iter().map(|&(i, w)| w * src[i]).sum();
            }
        }
        let mut pixels = vec![0.0; rows * cols];
        for (y, weights) in wy.iter().enumerate() {
            for x in 0..cols {
                pixels[y * cols + x] = weights.iter().map(|&(i, w)| w * across[i * cols + x]).sum();
            }
        }
        for p in &mut pixels {
            *p = p.clamp(0.0, 1.0);
        }
        GrayImage {
            width: cols,
            height: rows,
            pixels,
        }
    }
}

/// For each of `to` output cells over `from` input cells, the input cells it covers and the weight
/// of each (its covered length over the cell's length; the weights of a cell sum to 1).
fn area_weights(from: usize, to: usize) -> Vec<Vec<(usize, f64)>> {
    let scale = from as f64 / to as f64;
    (0..to)
        .map(|o| {
            let start = o as f64 * scale;
            let end = (o + 1) as f64 * scale;
            let first = start.floor() as usize;
            let last = (end.ceil() as usize).min(from);
            (first..last.max(first + 1))
                .filter_map(|i| {
                    let covered = end.min((i + 1) as f64) - start.max(i as f64);
                    (covered > 0.0).then_some((i, covered / scale))
                })
                .collect()
        })
        .collect()
}

/// An image made ready for a network: what [`prepare`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    /// `rows * cols` values in `[0, 1]`, row by row, a light digit on a dark background.
    pub pixels: Vec<f64>,
    /// Whether the image was inverted (it was a dark digit on a light background).
    pub inverted: bool,
    /// The width and height of the image as read.
    pub source_size: (usize, usize),
}

/// How [`prepare_with`] fits an image into the network's input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Fit {
    /// The whole image, scaled to the input size.
    #[default]
    Scale,
    /// As MNIST's digits were made: the digit's bounding box (its pixels of at least 0.1, light on
    /// dark) scaled, keeping its proportions, into a box of 20/28 of the input size (20 x 20 of
    /// 28 x 28), and placed with its centre of mass at the centre of the input. An image without
    /// such a pixel is scaled whole.
    Mnist,
}

/// The smallest value of a pixel of the digit, for [`Fit::Mnist`]'s bounding box.
const INK: f64 = 0.1;

/// Makes an image a network's input, like an MNIST image: a light digit on a dark background
/// (inverting a dark-on-light image, see [`GrayImage::is_dark_on_light`]), scaled to `rows x cols`
/// (see [`GrayImage::resized`]), values in `[0, 1]`. This is [`prepare_with`] and [`Fit::Scale`].
///
/// # Panics
///
/// If `rows` or `cols` is 0, or the image is empty.
#[track_caller]
pub fn prepare(image: &GrayImage, shape: (usize, usize)) -> Prepared {
    prepare_with(image, shape, Fit::Scale)
}

/// [`prepare`], fitting the image into the input as `fit` says.
///
/// ```
/// use bp_train::image::{Fit, GrayImage, prepare_with};
///
/// // A 2 x 2 square of ink in the corner of a 10 x 10 image, fitted like MNIST into 7 x 7: its
/// // box becomes 5 x 5 (20/28 of 7) and lands in the middle.
/// let mut pixels = vec![0.0; 100];
/// for (y, x) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
///     pixels[y * 10 + x] = 1.0;
/// }
/// let input = prepare_with(&GrayImage::new(10, 10, pixels), (7, 7), Fit::Mnist);
/// let row = |y: usize| input.pixels[y * 7..(y + 1) * 7].to_vec();
/// assert_eq!(row(0), [0.0; 7]);
/// assert_eq!(row(3), [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]);
/// ```
///
/// # Panics
///
/// If `rows` or `cols` is 0, or the image is empty.
#[track_caller]
pub fn prepare_with(image: &GrayImage, (rows, cols): (usize, usize), fit: Fit) -> Prepared {
    let inverted = image.is_dark_on_light();
    let light_on_dark = if inverted {
        image.inverted()
    } else {
        image.clone()
    };
    let input = match fit {
        Fit::Scale => light_on_dark.resized(rows, cols),
        Fit::Mnist => frame_like_mnist(&light_on_dark, rows, cols),
    };
    Prepared {
        pixels: input.pixels,
        inverted,
        source_size: (image.width, image.height),
    }
}

/// [`Fit::Mnist`] for a light-on-dark image.
fn frame_like_mnist(image: &GrayImage, rows: usize, cols: usize) -> GrayImage {
    let (w, h) = (image.width, image.height);
    let ink = |x: usize, y: usize| image.pixels[y * w + x] >= INK;
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for y in 0..h {
        for x in 0..w {
            if ink(x, y) {
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
            }
        }
    }
    if x1 <= x0 || y1 <= y0 {
        return image.resized(rows, cols);
    }
    let (bw, bh) = (x1 - x0, y1 - y0);
    let digit = GrayImage {
        width: bw,
        height: bh,
        pixels: (y0..y1)
            .flat_map(|y| image.pixels[y * w + x0..y * w + x1].iter().copied())
            .collect(),
    };
    let scale = (rows as f64 * 20.0 / 28.0 / bh as f64).min(cols as f64 * 20.0 / 28.0 / bw as f64);
    let dh = ((bh as f64 * scale).round() as usize).clamp(1, rows);
    let dw = ((bw as f64 * scale).round() as usize).clamp(1, cols);
    let small = digit.resized(dh, dw);
    let (mut mass, mut my, mut mx) = (0.0, 0.0, 0.0);
    for y in 0..dh {
        for x in 0..dw {
            let v = small.pixels[y * dw + x];
            mass += v;
            my += v * (y as f64 + 0.5);
            mx += v * (x as f64 + 0.5);
        }
    }
    let (cy, cx) = if mass > 0.0 {
        (my / mass, mx / mass)
    } else {
        (dh as f64 / 2.0, dw as f64 / 2.0)
    };
    let top = (rows as f64 / 2.0 - cy)
        .round()
        .clamp(0.0, (rows - dh) as f64) as usize;
    let left = (cols as f64 / 2.0 - cx)
        .round()
        .clamp(0.0, (cols - dw) as f64) as usize;
    let mut pixels = vec![0.0; rows * cols];
    for y in 0..dh {
        let row = (top + y) * cols + left;
        pixels[row..row + dw].copy_from_slice(&small.pixels[y * dw..(y + 1) * dw]);
    }
    GrayImage {
        width: cols,
        height: rows,
        pixels,
    }
}

/// Reads a PNG or PGM image and prepares it for a network taking `rows x cols` images; see
/// [`read_image`] and [`prepare_with`].
///
/// # Errors
///
/// As [`read_image`].
pub fn load_input(
    path: impl AsRef<Path>,
    shape: (usize, usize),
    fit: Fit,
) -> Result<Prepared, ImageError> {
    let image = read_image(path)?;
    Ok(prepare_with(&image, shape, fit))
}

/// Reads a PNG or PGM file as a grayscale image, recognising the format by its first bytes.
///
/// # Errors
///
/// [`ImageError::Read`] if the file cannot be read, and the errors of [`decode_image`].
pub fn read_image(path: impl AsRef<Path>) -> Result<GrayImage, ImageError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| ImageError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    decode_image(&bytes, path)
}

/// The PNG signature.
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Decodes the bytes of a PNG or PGM file; `path` names it in errors.
///
/// # Errors
///
/// [`ImageError::UnknownFormat`] for anything else (naming JPEG, GIF, BMP, WebP and the other
/// Netpbm formats when it sees them), [`ImageError::Png`] and [`ImageError::Pgm`] for malformed
/// files, [`ImageError::Empty`] and [`ImageError::TooLarge`].
pub fn decode_image(bytes: &[u8], path: &Path) -> Result<GrayImage, ImageError> {
    if bytes.starts_with(PNG_SIGNATURE) {
        return decode_png(bytes, path);
    }
    if bytes.starts_with(b"P2") || bytes.starts_with(b"P5") {
        return decode_pgm(bytes, path);
    }
    let found = match bytes {
        [] => "empty".to_owned(),
        [0xFF, 0xD8, 0xFF, ..] => "a JPEG image".to_owned(),
        [b'G', b'I', b'F', b'8', ..] => "a GIF image".to_owned(),
        [b'B', b'M', ..] => "a BMP image".to_owned(),
        [
            b'R',
            b'I',
            b'F',
            b'F',
            _,
            _,
            _,
            _,
            b'W',
            b'E',
            b'B',
            b'P',
            ..,
        ] => "a WebP image".to_owned(),
        [b'P', b'1' | b'4', ..] => "a PBM (bitmap) image".to_owned(),
        [b'P', b'3' | b'6', ..] => "a PPM (colour) image".to_owned(),
        [b'<', ..] => "text that looks like HTML or SVG".to_owned(),
        _ => {
            let start: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
            format!(
                "not an image format it knows (it starts with bytes {})",
                start.join(" ")
            )
        }
    };
    Err(ImageError::UnknownFormat {
        path: path.to_path_buf(),
        found,
    })
}

/// Checks an image's size.
fn check_size(path: &Path, width: usize, height: usize) -> Result<(), ImageError> {
    if width == 0 || height == 0 {
        return Err(ImageError::Empty {
            path: path.to_path_buf(),
            width,
            height,
        });
    }
    match width.checked_mul(height) {
        Some(n) if n <= MAX_PIXELS => Ok(()),
        _ => Err(ImageError::TooLarge {
            path: path.to_path_buf(),
            width,
            height,
        }),
    }
}

/// Decodes a PNG file: palette and sub-byte depths expanded, 16 bits reduced to 8, colour to luma,
/// transparency laid over a contrasting background (see the module documentation).
///
/// # Errors
///
/// [`ImageError::Png`], [`ImageError::Empty`] (the decoder refuses a zero size) and
/// [`ImageError::TooLarge`].
pub fn decode_png(bytes: &[u8], path: &Path) -> Result<GrayImage, ImageError> {
    let png_err = |source| ImageError::Png {
        path: path.to_path_buf(),
        source,
    };
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let header = decoder.read_header_info().map_err(png_err)?;
    let (width, height) = (header.width as usize, header.height as usize);
    check_size(path, width, height)?;
    let mut reader = decoder.read_info().map_err(png_err)?;
    let size = reader
        .output_buffer_size()
        .expect("a size within MAX_PIXELS fits in memory");
    let mut buf = vec![0u8; size];
    let frame = reader.next_frame(&mut buf).map_err(png_err)?;
    let channels = frame.color_type.samples();
    let data = &buf[..frame.buffer_size()];
    // (gray, alpha) of every pixel, in [0, 1].
    let ga: Vec<(f64, f64)> = (0..height)
        .flat_map(|y| {
            let row = &data[y * frame.line_size..y * frame.line_size + width * channels];
            row.chunks_exact(channels).map(move |p| {
                let v = |i: usize| f64::from(p[i]) / 255.0;
                match channels {
                    1 => (v(0), 1.0),
                    2 => (v(0), v(1)),
                    3 => (luma(v(0), v(1), v(2)), 1.0),
                    _ => (luma(v(0), v(1), v(2)), v(3)),
                }
            })
        })
        .collect();
    Ok(GrayImage::new(width, height, flatten_alpha(&ga)))
}

/// The Rec. 601 luma of an RGB colour; exactly the value of a gray one.
fn luma(r: f64, g: f64, b: f64) -> f64 {
    if r == g && g == b {
        r
    } else {
        0.299 * r + 0.587 * g + 0.114 * b
    }
}

/// Lays (gray, alpha) pixels over a background: white if the opaque part is dark on average (dark
/// ink on a transparent canvas), else black. Fully opaque images are returned as they are.
fn flatten_alpha(ga: &[(f64, f64)]) -> Vec<f64> {
    let (ink, weight) = ga
        .iter()
        .fold((0.0, 0.0), |(s, w), &(g, a)| (s + g * a, w + a));
    if ga.iter().all(|&(_, a)| a == 1.0) {
        return ga.iter().map(|&(g, _)| g).collect();
    }
    let background = if weight > 0.0 && ink / weight < 0.5 {
        1.0
    } else {
        0.0
    };
    ga.iter()
        .map(|&(g, a)| (a * g + (1.0 - a) * background).clamp(0.0, 1.0))
        .collect()
}

/// Reads the header fields and samples of a PGM file.
struct PgmReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl PgmReader<'_> {
    /// Skips whitespace and `#` comments (to the end of their line).
    fn skip_blanks(&mut self) {
        while let Some(&b) = self.bytes.get(self.pos) {
            if b == b'#' {
                while self
                    .bytes
                    .get(self.pos)
                    .is_some_and(|&c| c != b'\n' && c != b'\r')
                {
                    self.pos += 1;
                }
            } else if b.is_ascii_whitespace() {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    /// The next decimal number, after blanks; `None` if there is no number there.
    fn number(&mut self) -> Option<u64> {
        self.skip_blanks();
        let start = self.pos;
        while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        let digits = std::str::from_utf8(&self.bytes[start..self.pos]).ok()?;
        let end_ok = self
            .bytes
            .get(self.pos)
            .is_none_or(|&b| b.is_ascii_whitespace() || b == b'#');
        if digits.is_empty() || !end_ok {
            return None;
        }
        digits.parse().ok()
    }
}

/// Decodes a PGM file: `P2` (plain, decimal samples) or `P5` (binary, one byte per sample, or two
/// big-endian bytes if the maximum value is above 255). Samples are divided by the maximum value.
///
/// # Errors
///
/// [`ImageError::Pgm`] for a malformed header, a maximum value outside 1..=65535, a sample above it,
/// pixel data cut short or followed by anything but whitespace; [`ImageError::Empty`] and
/// [`ImageError::TooLarge`].
pub fn decode_pgm(bytes: &[u8], path: &Path) -> Result<GrayImage, ImageError> {
    let bad = |reason: String| ImageError::Pgm {
        path: path.to_path_buf(),
        reason,
    };
    let binary = bytes.starts_with(b"P5");
    let mut r = PgmReader { bytes, pos: 2 };
    if !r
        .bytes
        .get(2)
        .is_some_and(|b| b.is_ascii_whitespace() || *b == b'#')
    {
        return Err(bad(
            "the magic number is not followed by whitespace".to_owned()
        ));
    }
    let mut field = |name: &str| {
        r.number()
            .ok_or_else(|| bad(format!("the header's {name} is missing or not a number")))
    };
    let width = field("width")?;
    let height = field("height")?;
    let maxval = field("maximum value")?;
    let (width, height) = match (usize::try_from(width), usize::try_from(height)) {
        (Ok(w), Ok(h)) => (w, h),
        _ => (usize::MAX, usize::MAX),
    };
    check_size(path, width, height)?;
    if !(1..=65535).contains(&maxval) {
        return Err(bad(format!(
            "the maximum value {maxval} is not in 1..=65535"
        )));
    }
    let n = width * height;
    let max = maxval as f64;
    let mut pixels = Vec::with_capacity(n);
    if binary {
        // Exactly one whitespace byte separates the header from the samples.
        if !r.bytes.get(r.pos).is_some_and(u8::is_ascii_whitespace) {
            return Err(bad("no whitespace after the maximum value".to_owned()));
        }
        let start = r.pos + 1;
        let wide = maxval > 255;
        let sample_bytes = if wide { 2 } else { 1 };
        let need = n * sample_bytes;
        let data = bytes.get(start..start + need).ok_or_else(|| {
            bad(format!(
                "the pixel data is cut short: {width} x {height} pixels need {need} bytes, the file has {}",
                bytes.len().saturating_sub(start)
            ))
        })?;
        for s in data.chunks_exact(sample_bytes) {
            let v = if wide {
                u64::from(u16::from_be_bytes([s[0], s[1]]))
            } else {
                u64::from(s[0])
            };
            if v > maxval {
                return Err(bad(format!(
                    "a sample {v} is above the maximum value {maxval}"
                )));
            }
            pixels.push(v as f64 / max);
        }
        r.pos = start + need;
    } else {
        for i in 0..n {
            let v = r
                .number()
                .ok_or_else(|| bad(format!("pixel {} of {n} is missing or not a number", i + 1)))?;
            if v > maxval {
                return Err(bad(format!(
                    "a sample {v} is above the maximum value {maxval}"
                )));
            }
            pixels.push(v as f64 / max);
        }
    }
    r.skip_blanks();
    if r.pos != bytes.len() {
        return Err(bad(format!(
            "the file goes on after the {n} pixels ({} more bytes)",
            bytes.len() - r.pos
        )));
    }
    Ok(GrayImage::new(width, height, pixels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> &'static Path {
        Path::new("digit.pgm")
    }

    #[test]
    fn area_weights_cover_each_output_cell_once() {
        for (from, to) in [
            (28, 28),
            (56, 28),
            (100, 28),
            (28, 56),
            (3, 2),
            (2, 3),
            (7, 1),
        ] {
            let w = area_weights(from, to);
            assert_eq!(w.len(), to);
            let mut per_input = vec![0.0; from];
            for cell in &w {
                let sum: f64 = cell.iter().map(|&(_, w)| w).sum();
                assert!((sum - 1.0).abs() < 1e-12, "{from} -> {to}: {cell:?}");
                for &(i, weight) in cell {
                    per_input[i] += weight;
                }
            }
            // Every input pixel contributes to the whole in proportion to its area.
            for p in per_input {
                assert!((p - to as f64 / from as f64).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn halving_averages_two_by_two_blocks() {
        let img = GrayImage::new(4, 2, vec![0.0, 1.0, 0.5, 0.5, 1.0, 0.0, 0.25, 0.75]);
        assert_eq!(img.resized(1, 2).pixels(), [0.5, 0.5]);
        let up = GrayImage::new(1, 1, vec![0.3]).resized(3, 2);
        assert!(up.pixels().iter().all(|&v| (v - 0.3).abs() < 1e-12));
        assert_eq!(img.resized(2, 4), img);
    }

    #[test]
    fn plain_and_binary_pgm_decode_alike() {
        let plain = b"P2\n# a comment\n3 2\n# another\n255\n0 128 255\n 255 0 64\n";
        let mut binary = b"P5 3 2 255\n".to_vec();
        binary.extend([0, 128, 255, 255, 0, 64]);
        let a = decode_pgm(plain, path()).unwrap();
        let b = decode_pgm(&binary, path()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.pixels()[1], 128.0 / 255.0);
        let mut wide = b"P5\n1 1\n65535\n".to_vec();
        wide.extend([0x80, 0x00]);
        assert_eq!(
            decode_pgm(&wide, path()).unwrap().pixels(),
            [32768.0 / 65535.0]
        );
    }

    #[test]
    fn malformed_pgm_is_refused_with_a_reason() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"P5 2 2 255\n\x00\x01\x02",
                "cut short: 2 x 2 pixels need 4 bytes, the file has 3",
            ),
            (b"P2 2 1 255\n0", "pixel 2 of 2 is missing"),
            (
                b"P2 2 1 10\n0 11",
                "a sample 11 is above the maximum value 10",
            ),
            (b"P2 2 1 0\n0 0", "the maximum value 0 is not in 1..=65535"),
            (b"P2 2 1 70000\n0 0", "the maximum value 70000"),
            (
                b"P2 x 1 255\n0",
                "the header's width is missing or not a number",
            ),
            (b"P2 2", "the header's height is missing"),
            (
                b"P2 1 1 255\n0 7",
                "the file goes on after the 1 pixels (1 more bytes)",
            ),
            (
                b"P5 1 1 255\n\x00\x00",
                "the file goes on after the 1 pixels (1 more bytes)",
            ),
            (
                b"P2x 1 1 255 0",
                "the magic number is not followed by whitespace",
            ),
            (
                b"P21 1 255 0",
                "the magic number is not followed by whitespace",
            ),
            (b"P5 1 1 255", "no whitespace after the maximum value"),
        ];
        for (bytes, expected) in cases {
            let err = decode_pgm(bytes, path()).unwrap_err();
            assert!(matches!(err, ImageError::Pgm { .. }), "{err:?}");
            let msg = err.to_string();
            assert!(
                msg.starts_with("digit.pgm is not a valid PGM image: "),
                "{msg}"
            );
            assert!(
                msg.contains(expected),
                "{:?}: {msg}",
                String::from_utf8_lossy(bytes)
            );
        }
        assert!(matches!(
            decode_pgm(b"P2 0 5 255\n", path()),
            Err(ImageError::Empty {
                width: 0,
                height: 5,
                ..
            })
        ));
        assert!(matches!(
            decode_pgm(b"P5 100000 100000 255\n", path()),
            Err(ImageError::TooLarge { width: 100_000, .. })
        ));
        assert!(matches!(
            decode_pgm(b"P5 99999999999999999999999 1 255\n", path()),
            Err(ImageError::Pgm { .. })
        ));
    }

    #[test]
    fn other_formats_are_named() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "is empty"),
            (b"\xFF\xD8\xFF\xE0rest", "a JPEG image"),
            (b"GIF89a", "a GIF image"),
            (b"P6 1 1 255\n\0\0\0", "a PPM (colour) image"),
            (b"<html>", "HTML"),
            (b"\x00\x01", "starts with bytes 00 01"),
        ];
        for (bytes, expected) in cases {
            let err = decode_image(bytes, Path::new("x.png")).unwrap_err();
            assert!(matches!(err, ImageError::UnknownFormat { .. }));
            let msg = err.to_string();
            assert!(msg.starts_with("x.png is "), "{msg}");
            assert!(msg.contains(expected), "{msg}");
            assert!(
                msg.ends_with("bp-train reads PNG and PGM (P2, P5) images"),
                "{msg}"
            );
        }
    }

    /// A PNG of the given colour type and depth.
    fn png(
        width: u32,
        height: u32,
        color: png::ColorType,
        depth: png::BitDepth,
        data: &[u8],
        palette: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut out, width, height);
            encoder.set_color(color);
            encoder.set_depth(depth);
            if let Some(p) = palette {
                encoder.set_palette(p.to_vec());
            }
            let mut writer = encoder.write_header().unwrap();
            writer.write_image_data(data).unwrap();
        }
        out
    }

    #[test]
    fn every_png_colour_type_decodes_to_gray() {
        use png::{BitDepth, ColorType};
        let p = Path::new("x.png");
        let gray = png(2, 1, ColorType::Grayscale, BitDepth::Eight, &[0, 255], None);
        assert_eq!(decode_image(&gray, p).unwrap().pixels(), [0.0, 1.0]);
        let wide = png(
            2,
            1,
            ColorType::Grayscale,
            BitDepth::Sixteen,
            &[0x00, 0x00, 0xFF, 0xFF],
            None,
        );
        assert_eq!(decode_image(&wide, p).unwrap().pixels(), [0.0, 1.0]);
        // 1-bit gray: 0b10 in the top bits of a byte.
        let bits = png(
            2,
            1,
            ColorType::Grayscale,
            BitDepth::One,
            &[0b1000_0000],
            None,
        );
        assert_eq!(decode_image(&bits, p).unwrap().pixels(), [1.0, 0.0]);
        let rgb = png(1, 1, ColorType::Rgb, BitDepth::Eight, &[255, 0, 0], None);
        assert!((decode_image(&rgb, p).unwrap().pixels()[0] - 0.299).abs() < 1e-12);
        let palette = png(
            2,
            1,
            ColorType::Indexed,
            BitDepth::Eight,
            &[1, 0],
            Some(&[0, 0, 0, 255, 255, 255]),
        );
        assert_eq!(decode_image(&palette, p).unwrap().pixels(), [1.0, 0.0]);
        // Black ink on a transparent canvas (transparent black, as an HTML canvas starts).
        let rgba = png(
            3,
            1,
            ColorType::Rgba,
            BitDepth::Eight,
            &[0, 0, 0, 0, 0, 0, 0, 255, 0, 0, 0, 0],
            None,
        );
        let img = decode_image(&rgba, p).unwrap();
        assert_eq!(img.pixels(), [1.0, 0.0, 1.0]);
        assert!(prepare(&img, (1, 3)).inverted);
        let ga = png(
            1,
            1,
            ColorType::GrayscaleAlpha,
            BitDepth::Eight,
            &[255, 255],
            None,
        );
        assert_eq!(decode_image(&ga, p).unwrap().pixels(), [1.0]);
    }

    #[test]
    fn a_damaged_png_is_an_error_naming_the_file() {
        let good = png(
            2,
            2,
            png::ColorType::Grayscale,
            png::BitDepth::Eight,
            &[0, 1, 2, 3],
            None,
        );
        for bad in [&good[..20], &good[..good.len() - 13]] {
            let err = decode_image(bad, Path::new("cut.png")).unwrap_err();
            assert!(matches!(err, ImageError::Png { .. }), "{err:?}");
            assert_eq!(err.to_string(), "cut.png is not a valid PNG image");
        }
        let mut corrupt = good.clone();
        let n = corrupt.len();
        corrupt[n - 20] ^= 0xFF; // inside the compressed data or its checksum
        assert!(matches!(
            decode_image(&corrupt, Path::new("c.png")),
            Err(ImageError::Png { .. })
        ));
    }

    #[test]
    fn transparency_is_laid_over_a_contrasting_background() {
        // Dark ink on a transparent canvas reads as dark on white.
        let dark = flatten_alpha(&[(0.0, 1.0), (0.0, 0.0), (0.2, 0.5)]);
        assert_eq!(dark, [0.0, 1.0, 0.6]);
        // Light ink on a transparent canvas reads as light on black.
        let light = flatten_alpha(&[(1.0, 1.0), (1.0, 0.0)]);
        assert_eq!(light, [1.0, 0.0]);
        // Opaque images are untouched.
        assert_eq!(flatten_alpha(&[(0.3, 1.0), (0.9, 1.0)]), [0.3, 0.9]);
    }

    #[test]
    fn dark_on_light_is_inverted_and_light_on_dark_is_not() {
        let light_on_dark = GrayImage::new(3, 3, vec![0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        let p = prepare(&light_on_dark, (3, 3));
        assert!(!p.inverted);
        assert_eq!(p.pixels, light_on_dark.pixels());
        let q = prepare(&light_on_dark.inverted(), (3, 3));
        assert!(q.inverted);
        assert_eq!(q.pixels, light_on_dark.pixels());
        assert_eq!(q.source_size, (3, 3));
    }
}
