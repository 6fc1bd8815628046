//! Digit images for `bp-train predict`: PNG and PNM (PGM, PBM, PPM, PAM) files read to grayscale
//! and prepared like MNIST.
//!
//! [`read_image`] decodes a PNG (any colour type and bit depth, palette and transparency included)
//! or a PNM file (PGM `P2` plain or `P5` binary, 8 or 16 bits; PBM, PPM and PAM too) to a
//! [`GrayImage`] of values in `[0, 1]`, 0 black and 1 white. Decoding is the [`image`] crate's;
//! the format is recognised by the file's first bytes, never by its name. [`prepare`] then makes
//! the network's input the way MNIST's images are: a white digit on a black background (an image
//! whose border is mostly light is a dark digit on a light background, and is inverted), scaled to
//! the model's `rows x cols` by area averaging, row by row; or, with [`Fit::Mnist`], the digit's
//! bounding box scaled into the middle 20/28 and centred by its centre of mass, as MNIST's digits
//! were.
//!
//! Colour is turned to gray by the Rec. 601 luma `0.299 R + 0.587 G + 0.114 B`, at the file's
//! precision (16-bit samples stay 16-bit). Transparent pixels are laid over a background that
//! contrasts with the opaque ones (white under dark ink, black under light ink), so that a digit
//! drawn on a transparent canvas reads as drawn on paper of that colour.
//!
//! Every unreadable, truncated or malformed file is an [`ImageError`] naming the file. For
//! example, a 4 x 4 dark stroke on white paper is inverted by [`prepare`], then averaged down to
//! 2 x 2:
//!
//! ```text
//! 1 1 1 1
//! 1 0 0 1      inverted, 2 x 2      0.25 0.25
//! 1 0 0 1   ------------------->    0.25 0.25
//! 1 1 1 1
//! ```

use std::io::Cursor;
use std::path::{Path, PathBuf};

use bp_train::files::read_regular;
use image::codecs::pnm::PnmDecoder;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

/// The largest image, in pixels, that is read: 2²⁶ (an 8192 x 8192 picture).
pub const MAX_PIXELS: usize = 1 << 26;

/// The largest image file that is read: 16 bytes for each of [`MAX_PIXELS`] pixels, 1 GiB. The
/// widest pixel is 8 bytes (16-bit RGBA, in PNG or PAM); the rest leaves room for what a file may
/// hold besides, such as a PNG's chunks or a plain PGM's numbers in text. A larger file, or one
/// that grows past it while it is read, is refused before it is decoded.
pub const MAX_IMAGE_BYTES: u64 = 16 * MAX_PIXELS as u64;

/// What can go wrong reading an image. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The file could not be read: it is missing, it is not a regular file (a FIFO, a device, a
    /// directory, a dangling symbolic link), it is larger than [`MAX_IMAGE_BYTES`], or reading
    /// failed. The source says which.
    #[error("cannot read the image {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The file is neither PNG nor PNM.
    #[error("{} is {found}; bp-train reads PNG and PNM (PGM, PBM, PPM, PAM) images", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
        /// What the file looks like, such as "a JPEG image" or "empty".
        found: String,
    },

    /// The decoder refused the file: it is truncated, malformed, or uses something the decoder
    /// does not support. The message ends with the decoder's reason; `error` is not also the
    /// [`source`](std::error::Error::source), so that a chain of causes does not repeat it.
    #[error("{} is not a valid {format} image: {}", path.display(), reason(error))]
    Decode {
        /// The file.
        path: PathBuf,
        /// The format its first bytes announce: "PNG", "PGM", "PBM", "PPM" or "PAM".
        format: &'static str,
        /// The decoder's error.
        error: image::ImageError,
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

    /// The image has more pixels than are read ([`MAX_PIXELS`] from a file).
    #[error("the image {} is too large: {width} x {height} pixels (at most {max})", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its width.
        width: usize,
        /// Its height.
        height: usize,
        /// The most pixels read.
        max: usize,
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
    #[cfg(test)]
    pub fn width(&self) -> usize {
        self.width
    }

    /// The height in pixels.
    #[cfg(test)]
    pub fn height(&self) -> usize {
        self.height
    }

    /// The pixels, row by row.
    #[cfg(test)]
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
#[cfg(test)]
pub fn prepare(image: &GrayImage, shape: (usize, usize)) -> Prepared {
    prepare_with(image, shape, Fit::Scale)
}

/// [`prepare`], fitting the image into the input as `fit` says.
///
/// For example, a 2 x 2 square of ink in the corner of a 10 x 10 image, fitted like MNIST
/// ([`Fit::Mnist`]) into 7 x 7, becomes a 5 x 5 box (20/28 of 7) in the middle of the input.
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

/// Reads a PNG or PNM image and prepares it for a network taking `rows x cols` images; see
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

/// Reads a PNG or PNM file as a grayscale image, recognising the format by its first bytes. Only
/// a regular file is opened (a FIFO, a device or a directory is refused at once, without waiting
/// or reading), and at most [`MAX_IMAGE_BYTES`] of it.
///
/// # Errors
///
/// [`ImageError::Read`] if the file cannot be read, is not a regular file or is larger than
/// [`MAX_IMAGE_BYTES`], and the errors of [`decode_image`].
pub fn read_image(path: impl AsRef<Path>) -> Result<GrayImage, ImageError> {
    let path = path.as_ref();
    let bytes = read_regular(path, MAX_IMAGE_BYTES).map_err(|source| ImageError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    decode_image(&bytes, path)
}

/// Decodes the bytes of a PNG or PNM file to gray (see the module documentation); `path` names it
/// in errors. The format is recognised by the first bytes; the size is checked before the pixel
/// data is decoded.
///
/// # Errors
///
/// [`ImageError::UnknownFormat`] for anything else (naming JPEG, GIF, BMP, WebP, TIFF and the other
/// formats it recognises), [`ImageError::Decode`] for a file the decoder refuses,
/// [`ImageError::Empty`] and [`ImageError::TooLarge`].
pub fn decode_image(bytes: &[u8], path: &Path) -> Result<GrayImage, ImageError> {
    decode_image_within(bytes, path, MAX_PIXELS)
}

/// [`decode_image`] for images of at most `max_pixels` pixels: a larger one is refused by the size
/// its header declares, before room is made for its pixels.
///
/// # Errors
///
/// As [`decode_image`], [`ImageError::TooLarge`] above `max_pixels`.
pub fn decode_image_within(
    bytes: &[u8],
    path: &Path,
    max_pixels: usize,
) -> Result<GrayImage, ImageError> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|source| ImageError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    let decode_error = |format| {
        move |error| ImageError::Decode {
            path: path.to_path_buf(),
            format,
            error,
        }
    };
    // Making a decoder reads the header (for PNG, every chunk before the pixel data), not the
    // pixels.
    match reader.format() {
        Some(ImageFormat::Png) => {
            let decoder = reader.into_decoder().map_err(decode_error("PNG"))?;
            decode_pixels(decoder, path, "PNG", None, max_pixels)
        }
        Some(ImageFormat::Pnm) => {
            let format = pnm_kind(bytes);
            let decoder = PnmDecoder::new(reader.into_inner()).map_err(decode_error(format))?;
            let maxval = decoder.header().maximal_sample();
            decode_pixels(decoder, path, format, Some(maxval), max_pixels)
        }
        other => Err(ImageError::UnknownFormat {
            path: path.to_path_buf(),
            found: describe(bytes, other),
        }),
    }
}

/// Checks the size a decoder read in the header, then decodes the pixels to gray. `maxval` is a
/// PNM file's largest sample value, which the decoder stretched to 255 or 65535.
fn decode_pixels(
    decoder: impl ImageDecoder,
    path: &Path,
    format: &'static str,
    maxval: Option<u32>,
    max_pixels: usize,
) -> Result<GrayImage, ImageError> {
    let (width, height) = decoder.dimensions();
    let (width, height) = (to_usize(width), to_usize(height));
    check_size(path, width, height, max_pixels)?;
    let image = DynamicImage::from_decoder(decoder).map_err(|error| ImageError::Decode {
        path: path.to_path_buf(),
        format,
        error,
    })?;
    Ok(GrayImage::new(width, height, to_gray(&image, maxval)))
}

/// What is wrong, from a decoder's error: the innermost message (`image`'s own repeats its
/// cause's), "the file is cut short" for an early end.
fn reason(error: &image::ImageError) -> String {
    match error {
        image::ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the file is cut short".to_owned()
        }
        image::ImageError::Decoding(e) => match std::error::Error::source(e) {
            Some(cause) => cause.to_string(),
            None => e.to_string(),
        },
        other => other.to_string(),
    }
}

/// A `u32` as a `usize` (saturating where it would not fit, which [`check_size`] then refuses).
fn to_usize(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Which member of the PNM family a file starting with `P1` ... `P7` is.
fn pnm_kind(bytes: &[u8]) -> &'static str {
    match bytes.get(1) {
        Some(b'1' | b'4') => "PBM",
        Some(b'2' | b'5') => "PGM",
        Some(b'3' | b'6') => "PPM",
        Some(b'7') => "PAM",
        _ => "PNM",
    }
}

/// What a file bp-train does not read looks like, from the format `image` recognised in it if any,
/// else from its first bytes.
fn describe(bytes: &[u8], format: Option<ImageFormat>) -> String {
    let name = match format {
        Some(ImageFormat::Jpeg) => "a JPEG image",
        Some(ImageFormat::Gif) => "a GIF image",
        Some(ImageFormat::Bmp) => "a BMP image",
        Some(ImageFormat::WebP) => "a WebP image",
        Some(ImageFormat::Tiff) => "a TIFF image",
        Some(ImageFormat::Ico) => "an ICO image",
        Some(ImageFormat::Avif) => "an AVIF image",
        Some(ImageFormat::Hdr) => "a Radiance HDR image",
        Some(ImageFormat::OpenExr) => "an OpenEXR image",
        Some(ImageFormat::Dds) => "a DDS image",
        Some(ImageFormat::Qoi) => "a QOI image",
        Some(ImageFormat::Farbfeld) => "a farbfeld image",
        Some(other) => return format!("a {other:?} image"),
        None => match bytes {
            [] => "empty",
            [b'<', ..] => "text that looks like HTML or SVG",
            _ => {
                let start: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
                return format!(
                    "not an image format it knows (it starts with bytes {})",
                    start.join(" ")
                );
            }
        },
    };
    name.to_owned()
}

/// Checks an image's size.
fn check_size(
    path: &Path,
    width: usize,
    height: usize,
    max_pixels: usize,
) -> Result<(), ImageError> {
    if width == 0 || height == 0 {
        return Err(ImageError::Empty {
            path: path.to_path_buf(),
            width,
            height,
        });
    }
    match width.checked_mul(height) {
        Some(n) if n <= max_pixels => Ok(()),
        _ => Err(ImageError::TooLarge {
            path: path.to_path_buf(),
            width,
            height,
            max: max_pixels,
        }),
    }
}

/// The gray values of a decoded image: samples in `[0, 1]` (see [`sample_unit`]), colour to luma,
/// transparency laid over a contrasting background (see [`over_background`]).
fn to_gray(image: &DynamicImage, maxval: Option<u32>) -> Vec<f64> {
    let unit8 = sample_unit(255, maxval);
    let unit16 = sample_unit(65535, maxval);
    let u8_unit = |v: u8| unit8(f64::from(v));
    let u16_unit = |v: u16| unit16(f64::from(v));
    let f32_unit = |v: f32| {
        if v.is_nan() {
            0.0
        } else {
            f64::from(v).clamp(0.0, 1.0)
        }
    };
    match image {
        DynamicImage::ImageLuma8(b) => gray_alpha(b.as_raw(), 1, u8_unit),
        DynamicImage::ImageLumaA8(b) => gray_alpha(b.as_raw(), 2, u8_unit),
        DynamicImage::ImageRgb8(b) => gray_alpha(b.as_raw(), 3, u8_unit),
        DynamicImage::ImageRgba8(b) => gray_alpha(b.as_raw(), 4, u8_unit),
        DynamicImage::ImageLuma16(b) => gray_alpha(b.as_raw(), 1, u16_unit),
        DynamicImage::ImageLumaA16(b) => gray_alpha(b.as_raw(), 2, u16_unit),
        DynamicImage::ImageRgb16(b) => gray_alpha(b.as_raw(), 3, u16_unit),
        DynamicImage::ImageRgba16(b) => gray_alpha(b.as_raw(), 4, u16_unit),
        DynamicImage::ImageRgb32F(b) => gray_alpha(b.as_raw(), 3, f32_unit),
        DynamicImage::ImageRgba32F(b) => gray_alpha(b.as_raw(), 4, f32_unit),
        // A layout added to `image` later: as RGBA, at 32-bit float precision.
        other => gray_alpha(other.to_rgba32f().as_raw(), 4, f32_unit),
    }
}

/// Takes a decoded sample of `0..=full` (255 or 65535) to `[0, 1]`. A PNM file's samples of
/// `0..=maxval` were stretched to `0..=full` and rounded by the decoder; this undoes the rounding,
/// giving `sample / maxval` exactly (a sample above `maxval` was clipped, and gives 1).
fn sample_unit(full: u32, maxval: Option<u32>) -> impl Fn(f64) -> f64 {
    let full = f64::from(full);
    let max = match maxval {
        Some(m) if m >= 1 && f64::from(m) < full => f64::from(m),
        _ => full,
    };
    move |v| {
        if max == full {
            v / full
        } else {
            (v * max / full).round() / max
        }
    }
}

/// The gray values of interleaved samples of 1 (gray), 2 (gray, alpha), 3 (RGB) or 4 (RGBA)
/// channels, `unit` taking a sample to `[0, 1]`.
fn gray_alpha<T: Copy>(samples: &[T], channels: usize, unit: impl Fn(T) -> f64) -> Vec<f64> {
    let pixel = |p: &[T]| {
        let v = |i: usize| unit(p[i]);
        match channels {
            1 => (v(0), 1.0),
            2 => (v(0), v(1)),
            3 => (luma(v(0), v(1), v(2)), 1.0),
            _ => (luma(v(0), v(1), v(2)), v(3)),
        }
    };
    over_background(samples.chunks_exact(channels).map(pixel))
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
/// ink on a transparent canvas), else black. Fully opaque pixels are returned as they are.
fn over_background(pixels: impl Iterator<Item = (f64, f64)> + Clone) -> Vec<f64> {
    let (mut ink, mut weight, mut opaque) = (0.0, 0.0, true);
    for (g, a) in pixels.clone() {
        ink += g * a;
        weight += a;
        opaque &= a == 1.0;
    }
    if opaque {
        return pixels.map(|(g, _)| g).collect();
    }
    let background = if weight > 0.0 && ink / weight < 0.5 {
        1.0
    } else {
        0.0
    };
    pixels
        .map(|(g, a)| (a * g + (1.0 - a) * background).clamp(0.0, 1.0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::codecs::png::PngEncoder;
    use image::{ExtendedColorType, ImageEncoder};

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

    /// The module documentation's example.
    #[test]
    fn a_dark_stroke_on_white_paper_is_inverted_and_averaged() {
        #[rustfmt::skip]
        let paper = GrayImage::new(4, 4, vec![
            1.0, 1.0, 1.0, 1.0,
            1.0, 0.0, 0.0, 1.0,
            1.0, 0.0, 0.0, 1.0,
            1.0, 1.0, 1.0, 1.0,
        ]);
        let input = prepare(&paper, (2, 2));
        assert!(input.inverted);
        assert_eq!(input.pixels, [0.25, 0.25, 0.25, 0.25]);
        assert_eq!(input.source_size, (4, 4));
    }

    /// [`prepare_with`]'s example.
    #[test]
    fn mnist_fit_centres_the_digit_box() {
        // A 2 x 2 square of ink in the corner of a 10 x 10 image, fitted like MNIST into 7 x 7: its
        // box becomes 5 x 5 (20/28 of 7) and lands in the middle.
        let mut pixels = vec![0.0; 100];
        for (y, x) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            pixels[y * 10 + x] = 1.0;
        }
        let input = prepare_with(&GrayImage::new(10, 10, pixels), (7, 7), Fit::Mnist);
        assert!(!input.inverted);
        let row = |y: usize| input.pixels[y * 7..(y + 1) * 7].to_vec();
        assert_eq!(row(0), [0.0; 7]);
        assert_eq!(row(3), [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]);
        assert_eq!(row(6), [0.0; 7]);
        for y in 1..6 {
            let ink = [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0];
            assert!(
                row(y).iter().zip(ink).all(|(v, w)| (v - w).abs() < 1e-12),
                "row {y}: {:?}",
                row(y)
            );
        }
        // Without ink, the image is scaled whole.
        let blank = prepare_with(&GrayImage::new(4, 4, vec![0.05; 16]), (2, 2), Fit::Mnist);
        assert_eq!(blank.pixels, [0.05; 4]);
    }

    #[test]
    fn plain_and_binary_pgm_decode_alike() {
        let plain = b"P2\n# a comment\n3 2\n# another\n255\n0 128 255\n 255 0 64\n";
        let mut binary = b"P5 3 2 255\n".to_vec();
        binary.extend([0, 128, 255, 255, 0, 64]);
        let a = decode_image(plain, path()).unwrap();
        let b = decode_image(&binary, path()).unwrap();
        assert_eq!(a, b);
        assert_eq!((a.width(), a.height()), (3, 2));
        assert_eq!(
            a.pixels(),
            [0.0, 128.0 / 255.0, 1.0, 1.0, 0.0, 64.0 / 255.0]
        );
        // 16 bits, binary (big-endian) and plain, keep their precision.
        let mut wide = b"P5\n1 1\n65535\n".to_vec();
        wide.extend([0x80, 0x00]);
        assert_eq!(
            decode_image(&wide, path()).unwrap().pixels(),
            [32768.0 / 65535.0]
        );
        assert_eq!(
            decode_image(b"P2 2 1 65535\n1 65534\n", path())
                .unwrap()
                .pixels(),
            [1.0 / 65535.0, 65534.0 / 65535.0]
        );
        // Samples are divided by the maximum value, whatever it is.
        assert_eq!(
            decode_image(b"P2 4 1 10\n0 1 5 10\n", path())
                .unwrap()
                .pixels(),
            [0.0, 0.1, 0.5, 1.0]
        );
        let mut ten_bits = b"P5 2 1 1023\n".to_vec();
        ten_bits.extend([0x00, 0x01, 0x01, 0xFF]);
        assert_eq!(
            decode_image(&ten_bits, path()).unwrap().pixels(),
            [1.0 / 1023.0, 511.0 / 1023.0]
        );
        for maxval in 1..=255u32 {
            let mut file = format!("P5 {} 1 {maxval}\n", maxval + 1).into_bytes();
            file.extend((0..=maxval).map(|s| s as u8));
            let img = decode_image(&file, path()).unwrap();
            for (s, &v) in img.pixels().iter().enumerate() {
                assert_eq!(v, s as f64 / f64::from(maxval), "{s} of {maxval}");
            }
        }
    }

    #[test]
    fn malformed_pgm_is_refused_with_a_reason() {
        let cases: &[(&[u8], &str)] = &[
            (b"P5 2 2 255\n\x00\x01\x02", "the file is cut short"),
            (b"P5 1 1 255", "the file is cut short"),
            (
                b"P2 2 1 255\n0",
                "Not enough data was provided to the Decoder",
            ),
            (b"P2 2 1 0\n0 0", "Image MAXVAL is zero"),
            (b"P2 2 1 70000\n0 0", "Image MAXVAL exceeds 65535: 70000"),
            (
                b"P2 x 1 255\n0",
                "Non-ASCII-digit character when parsing number",
            ),
            (b"P2 2", "the file is cut short"),
            (
                b"P2x 1 1 255 0",
                "Non-ASCII-digit character when parsing number",
            ),
            (
                b"P2 1 1 255\n256",
                "Overflow when parsing integer in sample",
            ),
            (b"P2 1 1 255\n-1", "Non-ASCII-digit character"),
            (
                b"P5 99999999999999999999999 1 255\n",
                "Overflow when parsing integer",
            ),
        ];
        for (bytes, expected) in cases {
            let err = decode_image(bytes, path()).unwrap_err();
            assert!(
                matches!(err, ImageError::Decode { format: "PGM", .. }),
                "{err:?}"
            );
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
            // The reason is in the message, once: no cause repeats it.
            assert!(std::error::Error::source(&err).is_none());
        }
        assert!(matches!(
            decode_image(b"P2 0 5 255\n", path()),
            Err(ImageError::Empty {
                width: 0,
                height: 5,
                ..
            })
        ));
        let err = decode_image(b"P5 100000 100000 255\n", path()).unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::TooLarge {
                    width: 100_000,
                    height: 100_000,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "the image digit.pgm is too large: 100000 x 100000 pixels (at most 67108864)"
        );
    }

    /// What the old hand-written PGM reader refused and `image`'s PNM decoder accepts.
    #[test]
    fn pnm_oddities_the_decoder_tolerates() {
        let cases: &[(&[u8], &[f64])] = &[
            // A sample above the maximum value is clipped to white.
            (b"P2 2 1 10\n0 11", &[0.0, 1.0]),
            // Bytes after the pixels (PNM allows several images in a file) are ignored.
            (b"P2 1 1 255\n0 7", &[0.0]),
            (b"P5 1 1 255\n\x40\x00", &[64.0 / 255.0]),
            // No whitespace after the magic number.
            (b"P21 1 255 0", &[0.0]),
        ];
        for (bytes, pixels) in cases {
            let img = decode_image(bytes, path()).unwrap();
            assert_eq!(
                img.pixels(),
                *pixels,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn the_other_pnm_formats_decode_to_gray() {
        let p = Path::new("x.pnm");
        // PBM: 1 is black. Plain, then binary (rows padded to a byte).
        let plain = decode_image(b"P1 3 2\n1 0 1\n0 1 0\n", p).unwrap();
        assert_eq!(plain.pixels(), [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]);
        let binary = decode_image(b"P4 3 2\n\xA0\x40", p).unwrap();
        assert_eq!(binary, plain);
        // PPM: Rec. 601 luma, exact for grays; 8 and 16 bits, plain and binary.
        let ppm = decode_image(b"P6 3 1 255\n\xFF\x00\x00\x00\xFF\x00\x40\x40\x40", p).unwrap();
        assert_eq!(ppm.pixels(), [0.299, 0.587, 64.0 / 255.0]);
        let ppm16 = decode_image(b"P3 1 1 65535\n0 0 65535\n", p).unwrap();
        assert_eq!(ppm16.pixels(), [0.114]);
        // PAM with transparency: dark ink on a transparent canvas reads as dark on white.
        let pam = decode_image(
            b"P7\nWIDTH 3\nHEIGHT 1\nDEPTH 2\nMAXVAL 255\nTUPLTYPE GRAYSCALE_ALPHA\nENDHDR\n\
              \x00\xFF\x00\x00\x00\x00",
            p,
        )
        .unwrap();
        assert_eq!(pam.pixels(), [0.0, 1.0, 1.0]);
        // Malformed members of the family name themselves.
        for (bytes, format) in [
            (&b"P4 8 1\n"[..], "PBM"),
            (b"P6 1 1 255\n\x00", "PPM"),
            (b"P7\nWIDTH 1\nENDHDR\n", "PAM"),
        ] {
            let err = decode_image(bytes, p).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("x.pnm is not a valid {format} image: ")),
                "{msg}"
            );
        }
    }

    #[test]
    fn other_formats_are_named() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "is empty"),
            (b"\xFF\xD8\xFF\xE0rest", "is a JPEG image"),
            (b"GIF89a", "is a GIF image"),
            (b"BM\x00\x00", "is a BMP image"),
            (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "is a WebP image"),
            (b"II*\x00", "is a TIFF image"),
            (b"qoif\x00\x00", "is a QOI image"),
            (b"<html>", "HTML"),
            (b"P", "starts with bytes 50"),
            (b"P8 1 1", "starts with bytes 50 38 20 31 20 31"),
            (b"\x00\x01", "starts with bytes 00 01"),
        ];
        for (bytes, expected) in cases {
            let err = decode_image(bytes, Path::new("x.png")).unwrap_err();
            assert!(matches!(err, ImageError::UnknownFormat { .. }), "{err:?}");
            let msg = err.to_string();
            assert!(msg.starts_with("x.png is "), "{msg}");
            assert!(msg.contains(expected), "{msg}");
            assert!(
                msg.ends_with("bp-train reads PNG and PNM (PGM, PBM, PPM, PAM) images"),
                "{msg}"
            );
        }
        // The content decides, not the name.
        let pgm = decode_image(b"P2 1 1 255\n255\n", Path::new("digit.jpg")).unwrap();
        assert_eq!(pgm.pixels(), [1.0]);
    }

    /// A PNG encoded by `image`, from samples (native-endian for 16 bits).
    fn encode_png(width: u32, height: u32, color: ExtendedColorType, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PngEncoder::new(&mut out)
            .write_image(data, width, height, color)
            .unwrap();
        out
    }

    /// 16-bit samples as the native-endian bytes [`encode_png`] takes.
    fn wide(samples: &[u16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_ne_bytes()).collect()
    }

    /// The CRC-32 of PNG chunks.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    0xEDB8_8320 ^ (crc >> 1)
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// A PNG written by hand, for what `image`'s encoder does not write (bit depths below 8,
    /// palettes, `tRNS`): IHDR of the given bit depth and colour type, the `extra` chunks, then the
    /// scanlines (unfiltered) in one stored (uncompressed) zlib block.
    fn raw_png(
        (width, height): (u32, u32),
        depth: u8,
        color: u8,
        extra: &[(&[u8; 4], &[u8])],
        rows: &[&[u8]],
    ) -> Vec<u8> {
        let mut ihdr = Vec::new();
        ihdr.extend(width.to_be_bytes());
        ihdr.extend(height.to_be_bytes());
        ihdr.extend([depth, color, 0, 0, 0]);
        let scanlines: Vec<u8> = rows.iter().flat_map(|r| [&[0u8][..], r].concat()).collect();
        let len = u16::try_from(scanlines.len()).unwrap();
        let mut zlib = vec![0x78, 0x01, 0x01];
        zlib.extend(len.to_le_bytes());
        zlib.extend((!len).to_le_bytes());
        zlib.extend(&scanlines);
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in &scanlines {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        zlib.extend(((b << 16) | a).to_be_bytes());
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let chunks = [(b"IHDR", &ihdr[..])]
            .into_iter()
            .chain(extra.iter().copied())
            .chain([(b"IDAT", &zlib[..]), (b"IEND", &[][..])]);
        for (name, data) in chunks {
            out.extend(u32::try_from(data.len()).unwrap().to_be_bytes());
            let typed = [&name[..], data].concat();
            out.extend(&typed);
            out.extend(crc32(&typed).to_be_bytes());
        }
        out
    }

    #[test]
    fn every_png_colour_type_decodes_to_gray() {
        use ExtendedColorType as C;
        let p = Path::new("x.png");
        let gray = |bytes: &[u8]| decode_image(bytes, p).unwrap().pixels().to_vec();
        // Gray, 8 and 16 bits: 16-bit precision is kept.
        assert_eq!(
            gray(&encode_png(3, 1, C::L8, &[0, 128, 255])),
            [0.0, 128.0 / 255.0, 1.0]
        );
        assert_eq!(
            gray(&encode_png(3, 1, C::L16, &wide(&[0, 0x8000, 0xFFFF]))),
            [0.0, 32768.0 / 65535.0, 1.0]
        );
        // Gray below 8 bits: 1, 2 and 4, rows packed from the top bits.
        assert_eq!(
            gray(&raw_png((3, 1), 1, 0, &[], &[&[0b1010_0000]])),
            [1.0, 0.0, 1.0]
        );
        assert_eq!(
            gray(&raw_png((4, 1), 2, 0, &[], &[&[0b0001_1011]])),
            [0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0]
        );
        assert_eq!(
            gray(&raw_png((2, 1), 4, 0, &[], &[&[0x5F]])),
            [1.0 / 3.0, 1.0]
        );
        // RGB, 8 and 16 bits: Rec. 601 luma, exact for grays.
        assert_eq!(
            gray(&encode_png(
                3,
                1,
                C::Rgb8,
                &[255, 0, 0, 0, 255, 0, 64, 64, 64]
            )),
            [0.299, 0.587, 64.0 / 255.0]
        );
        assert_eq!(
            gray(&encode_png(1, 1, C::Rgb16, &wide(&[0, 0, 0xFFFF]))),
            [0.114]
        );
        let r16 = gray(&encode_png(
            1,
            1,
            C::Rgb16,
            &wide(&[0x8000, 0x8000, 0x7FFF]),
        ));
        assert!((r16[0] - (0.886 * 32768.0 + 0.114 * 32767.0) / 65535.0).abs() < 1e-12);
        // Palettes, 8 and 1 bits.
        let plte: &[u8] = &[0, 0, 0, 255, 255, 255, 255, 0, 0];
        assert_eq!(
            gray(&raw_png((3, 1), 8, 3, &[(b"PLTE", plte)], &[&[1, 0, 2]])),
            [1.0, 0.0, 0.299]
        );
        assert_eq!(
            gray(&raw_png(
                (2, 1),
                1,
                3,
                &[(b"PLTE", &plte[..6])],
                &[&[0b0100_0000]]
            )),
            [0.0, 1.0]
        );
        // Gray with alpha, 8 and 16 bits; RGBA 8 and 16 bits: opaque images are as they are.
        assert_eq!(gray(&encode_png(1, 1, C::La8, &[255, 255])), [1.0]);
        assert_eq!(
            gray(&encode_png(
                2,
                1,
                C::La16,
                &wide(&[0x4000, 0xFFFF, 0, 0xFFFF])
            )),
            [16384.0 / 65535.0, 0.0]
        );
        assert_eq!(
            gray(&encode_png(1, 1, C::Rgba16, &wide(&[0, 0xFFFF, 0, 0xFFFF]))),
            [0.587]
        );
        // Black ink on a transparent canvas (transparent black, as an HTML canvas starts).
        let rgba = encode_png(3, 1, C::Rgba8, &[0, 0, 0, 0, 0, 0, 0, 255, 0, 0, 0, 0]);
        let img = decode_image(&rgba, p).unwrap();
        assert_eq!(img.pixels(), [1.0, 0.0, 1.0]);
        assert!(prepare(&img, (1, 3)).inverted);
        // White ink on a transparent canvas: over black.
        assert_eq!(
            gray(&encode_png(
                2,
                1,
                C::La16,
                &wide(&[0xFFFF, 0xFFFF, 0xFFFF, 0])
            )),
            [1.0, 0.0]
        );
        // Transparency from tRNS: a gray key, and a palette's alphas.
        assert_eq!(
            gray(&raw_png(
                (2, 1),
                8,
                0,
                &[(b"tRNS", &[0, 255])],
                &[&[0, 255]]
            )),
            [0.0, 1.0]
        );
        assert_eq!(
            gray(&raw_png(
                (2, 1),
                8,
                3,
                &[(b"PLTE", &plte[..6]), (b"tRNS", &[0])],
                &[&[0, 1]]
            )),
            [0.0, 1.0]
        );
        assert_eq!(
            gray(&raw_png(
                (3, 1),
                8,
                3,
                &[(b"PLTE", &plte[..6]), (b"tRNS", &[255, 0])],
                &[&[0, 1, 0]]
            )),
            [0.0, 1.0, 0.0]
        );
    }

    #[test]
    fn a_damaged_png_is_an_error_naming_the_file() {
        let good = encode_png(2, 2, ExtendedColorType::L8, &[0, 1, 2, 3]);
        assert_eq!(
            decode_image(&good, Path::new("ok.png")).unwrap().pixels(),
            [0.0, 1.0 / 255.0, 2.0 / 255.0, 3.0 / 255.0]
        );
        for bad in [&good[..20], &good[..good.len() - 13]] {
            let err = decode_image(bad, Path::new("cut.png")).unwrap_err();
            assert!(
                matches!(err, ImageError::Decode { format: "PNG", .. }),
                "{err:?}"
            );
            assert!(
                err.to_string()
                    .starts_with("cut.png is not a valid PNG image: "),
                "{err}"
            );
        }
        let mut corrupt = good.clone();
        let n = corrupt.len();
        corrupt[n - 20] ^= 0xFF; // inside the compressed data or its checksum
        let err = decode_image(&corrupt, Path::new("c.png")).unwrap_err();
        assert!(matches!(err, ImageError::Decode { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("c.png is not a valid PNG image: "),
            "{err}"
        );
        // A bad checksum in the header.
        let mut header = good.clone();
        header[29] ^= 0xFF; // IHDR's CRC
        let err = decode_image(&header, Path::new("h.png")).unwrap_err();
        assert!(err.to_string().contains("CRC"), "{err}");
    }

    #[test]
    fn a_lower_pixel_limit_refuses_larger_images() {
        let mut pgm = b"P5 10 10 255\n".to_vec();
        pgm.extend([0u8; 100]);
        let img = decode_image_within(&pgm, path(), 100).unwrap();
        assert_eq!((img.width(), img.height()), (10, 10));
        let err = decode_image_within(&pgm, Path::new("the request"), 99).unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::TooLarge {
                    width: 10,
                    height: 10,
                    max: 99,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "the image the request is too large: 10 x 10 pixels (at most 99)"
        );
    }

    #[test]
    fn sizes_are_checked_before_the_pixels_are_decoded() {
        // Headers announcing huge images, with a few bytes of pixel data: refused by size, not
        // by the missing data, and without making room for the pixels.
        let huge = raw_png((100_000, 100_000), 8, 0, &[], &[&[0]]);
        let err = decode_image(&huge, Path::new("huge.png")).unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::TooLarge {
                    width: 100_000,
                    height: 100_000,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = decode_image(b"P5 4294967295 2 65535\n\x00", path()).unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::TooLarge {
                    width: 4_294_967_295,
                    height: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        // So large that the decoder's own byte count would overflow: its error.
        let err = decode_image(b"P5 4294967295 4294967295 65535\n\x00", path()).unwrap_err();
        assert!(matches!(err, ImageError::Decode { .. }), "{err:?}");
        assert!(err.to_string().contains("too large"), "{err}");
        let just_over = format!("P5 {} 2 255\n", MAX_PIXELS / 2 + 1);
        assert!(matches!(
            decode_image(just_over.as_bytes(), path()),
            Err(ImageError::TooLarge { height: 2, .. })
        ));
        assert!(matches!(
            decode_image(b"P1 7 0\n", path()),
            Err(ImageError::Empty {
                width: 7,
                height: 0,
                ..
            })
        ));
        // PNG refuses a zero size in its header.
        let err = decode_image(&raw_png((0, 1), 8, 0, &[], &[]), Path::new("z.png")).unwrap_err();
        assert!(matches!(err, ImageError::Decode { .. }), "{err:?}");
    }

    #[test]
    fn bad_input_never_panics() {
        let png = raw_png(
            (3, 2),
            8,
            3,
            &[(b"PLTE", &[0, 0, 0, 255, 255, 255]), (b"tRNS", &[0])],
            &[&[0, 1, 0], &[1, 1, 0]],
        );
        let files: [&[u8]; 5] = [
            &png,
            &encode_png(2, 1, ExtendedColorType::Rgba16, &[7; 16]),
            b"P2\n# c\n3 2\n255\n0 128 255\n255 0 64\n",
            b"P5 2 1 65535\n\x01\x02\x03\x04",
            b"P7\nWIDTH 1\nHEIGHT 1\nDEPTH 4\nMAXVAL 15\nTUPLTYPE RGB_ALPHA\nENDHDR\n\x01\x02\x03\x04",
        ];
        for file in files {
            decode_image(file, path()).unwrap();
            for cut in 0..file.len() {
                let _ = decode_image(&file[..cut], path());
            }
            for i in 0..file.len() {
                for flip in [0x01, 0x80, 0xFF] {
                    let mut bad = file.to_vec();
                    bad[i] ^= flip;
                    if let Ok(img) = decode_image(&bad, path()) {
                        assert!(img.pixels().iter().all(|v| (0.0..=1.0).contains(v)));
                    }
                }
            }
        }
    }

    #[test]
    fn files_are_read_and_errors_name_them() {
        let dir = std::env::temp_dir().join(format!("bp-image-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("one.pgm");
        std::fs::write(&file, b"P2 2 2 255\n255 255\n255 0\n").unwrap();
        let input = load_input(&file, (2, 2), Fit::Scale).unwrap();
        assert!(input.inverted);
        assert_eq!(input.pixels, [0.0, 0.0, 0.0, 1.0]);
        assert_eq!(input.source_size, (2, 2));
        let missing = dir.join("missing.png");
        let err = read_image(&missing).unwrap_err();
        assert!(matches!(err, ImageError::Read { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("cannot read the image {}", missing.display())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_over_the_size_cap_or_not_a_file_is_refused_unread() {
        use std::error::Error as _;
        let dir = tempfile::tempdir().unwrap();
        // A sparse file one byte over the cap: refused by its size, before a byte is read.
        let huge = dir.path().join("huge.pgm");
        let file = std::fs::File::create(&huge).unwrap();
        file.set_len(MAX_IMAGE_BYTES + 1).unwrap();
        drop(file);
        let err = read_image(&huge).unwrap_err();
        let ImageError::Read { source, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(source.kind(), std::io::ErrorKind::FileTooLarge);
        assert_eq!(
            err.source().unwrap().to_string(),
            "it is 1073741825 bytes (1.0 GiB), more than the 1073741824 bytes (1.0 GiB) read \
             from such a file"
        );
        let err = read_image(dir.path()).unwrap_err();
        assert_eq!(err.source().unwrap().to_string(), "it is a directory");
        if cfg!(unix) {
            let err = read_image("/dev/null").unwrap_err();
            assert_eq!(
                err.source().unwrap().to_string(),
                "it is a character device, not a regular file"
            );
        }
    }

    #[test]
    fn transparency_is_laid_over_a_contrasting_background() {
        let over = |ga: &[(f64, f64)]| over_background(ga.iter().copied());
        // Dark ink on a transparent canvas reads as dark on white.
        assert_eq!(over(&[(0.0, 1.0), (0.0, 0.0), (0.2, 0.5)]), [0.0, 1.0, 0.6]);
        // Light ink on a transparent canvas reads as light on black.
        assert_eq!(over(&[(1.0, 1.0), (1.0, 0.0)]), [1.0, 0.0]);
        // A wholly transparent image is black.
        assert_eq!(over(&[(1.0, 0.0), (0.0, 0.0)]), [0.0, 0.0]);
        // Opaque images are untouched.
        assert_eq!(over(&[(0.3, 1.0), (0.9, 1.0)]), [0.3, 0.9]);
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
