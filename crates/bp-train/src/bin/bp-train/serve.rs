//! `bp-train serve`: a saved model behind a small HTTP server, with a page to draw digits on.
//!
//! - `GET /` is one self-contained page (`serve.html`: its CSS and JavaScript inline, nothing
//!   from elsewhere): a canvas to draw on with a mouse, a pen or a finger, the predicted class and
//!   a bar for the probability of each class, updated when a stroke ends, and a file picker (or
//!   drag-and-drop) for a PNG or PGM image.
//! - `POST /predict` classifies one image: a PNG or PNM file (`Content-Type: image/png` or
//!   `image/x-portable-graymap`), or `application/json` grey values,
//!   `{"pixels": [...], "width": W, "height": H}`, row by row, from 0 (black) to 1 (white). The
//!   image goes through `predict`'s preparation ([`prepare_with`], fitted as `--fit` says) and the
//!   answer is `{"class": 7, "probabilities": [...], "model": {...}}`.
//! - `GET /healthz` answers `{"status": "ok", "model": {...}}`.
//!
//! A bad request (a body over [`MAX_BODY`] bytes, a wrong content type, an image that does not
//! decode or is over [`MAX_REQUEST_PIXELS`], JSON with the wrong number of pixels or values out of
//! range) is a 4xx answer with a JSON `{"error": "..."}`; the server goes on serving. The model is
//! loaded once and shared read-only by the requests (`predict` takes `&self`); at most one image
//! per core is decoded and classified at a time, on the runtime's blocking threads, so that a
//! burst of large images waits instead of taking the machine's memory.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use bp_train::model_file::AnyModel;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::eval::{ImagePrediction, classify};
use crate::image::{Fit, GrayImage, decode_image_within, prepare_with};

/// The largest request body, 1 MiB: a drawn digit as PNG takes a few KiB, and a 28 x 28 image as
/// JSON grey values about 5 KiB.
pub const MAX_BODY: usize = 1 << 20;

/// The largest image a request may hold, in pixels: 2²² (2048 x 2048). A compressed PNG of
/// [`MAX_BODY`] bytes can declare far more; decoded to gray, this many pixels take 32 MiB.
pub const MAX_REQUEST_PIXELS: usize = 1 << 22;

/// The page, with its CSS and JavaScript.
const PAGE: &str = include_str!("serve.html");

/// How images in requests are named in error messages.
const BODY_NAME: &str = "request body";

/// What the server shares between requests.
struct Shared {
    model: AnyModel,
    fit: Fit,
    /// What the answers say about the model.
    summary: ModelSummary,
    /// One permit per core: the images being decoded and classified.
    work: Arc<Semaphore>,
    /// Takes one line per request.
    log: Box<dyn Fn(&str) + Send + Sync>,
}

/// What the answers say about the model: its file's name (not its directory), description, layer
/// list, element type, input and classes, and what training reported for it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelSummary {
    /// The file's name.
    pub file: String,
    /// The one-line description, such as `TwoLayerNet 784-50-10, relu, init std 0.01, f32`.
    pub description: String,
    /// The layer list, `affine 50, relu, affine 10`.
    pub layers: String,
    /// `f32` or `f64`.
    pub dtype: &'static str,
    /// Rows and columns of an input image.
    pub image_shape: [usize; 2],
    /// The number of classes.
    pub classes: usize,
    /// The test accuracy training reported, if the file records it.
    pub test_acc: Option<f64>,
    /// The epoch after which the model was saved, if the file records it.
    pub epoch: Option<usize>,
}

impl ModelSummary {
    /// The summary of `model`, read from `path`.
    pub fn new(model: &AnyModel, path: &Path) -> Self {
        let specs = match model {
            AnyModel::F32(m) => m.net.specs(),
            AnyModel::F64(m) => m.net.specs(),
        };
        let info = model.info();
        ModelSummary {
            file: path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            description: model.describe(),
            layers: specs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            dtype: model.dtype().name(),
            image_shape: [info.image_shape.0, info.image_shape.1],
            classes: model.classes(),
            test_acc: info.training.map(|t| t.test_acc),
            epoch: info.training.map(|t| t.epoch),
        }
    }
}

/// A server bound to its address, not yet serving.
pub struct Server {
    listener: TcpListener,
    shared: Shared,
}

impl Server {
    /// Listens on `addr` for requests to classify images with `model` (read from `path`, which
    /// the answers name), fitted as `fit` says.
    ///
    /// # Errors
    ///
    /// The operating system's, if the address cannot be listened on (in use, not this machine's,
    /// a port that needs privileges).
    pub fn bind(
        model: AnyModel,
        path: &Path,
        addr: SocketAddr,
        fit: Fit,
        log: impl Fn(&str) + Send + Sync + 'static,
    ) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let summary = ModelSummary::new(&model, path);
        Ok(Server {
            listener,
            shared: Shared {
                model,
                fit,
                summary,
                work: Arc::new(Semaphore::new(cores)),
                log: Box::new(log),
            },
        })
    }

    /// The address the server listens on (with the port the system chose for port 0).
    ///
    /// # Errors
    ///
    /// The operating system's.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the process is sent Ctrl-C (SIGINT) or SIGTERM, then stops taking
    /// connections, finishes the requests under way and returns.
    ///
    /// # Errors
    ///
    /// The operating system's, if the runtime cannot start or the listener fails.
    pub fn run(self) -> io::Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_io()
            .build()?;
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(self.listener)?;
            let app = router(Arc::new(self.shared));
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(stop_signal())
            .await
        })
    }
}

/// The routes, the body limit and the request log.
fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(healthz))
        .route("/predict", post(predict))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(shared.clone(), log_request))
        .with_state(shared)
}

/// Resolves on Ctrl-C or SIGTERM. If the handlers cannot be installed, it never resolves: the
/// server then stops as any process does on those signals.
async fn stop_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// Logs one line per request: the client, the method and path, the status and the time taken.
async fn log_request(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    let mut path: String = request.uri().path().chars().take(100).collect();
    if path.len() < request.uri().path().len() {
        path.push_str("...");
    }
    let response = next.run(request).await;
    (shared.log)(&format!(
        "{peer} {method} {path} {} {:.1} ms",
        response.status().as_u16(),
        start.elapsed().as_secs_f64() * 1000.0
    ));
    response
}

/// An answer with a JSON body.
fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(body).expect("an answer converts to JSON"),
    )
        .into_response()
}

/// The answer of `POST /predict`.
#[derive(Serialize)]
struct Answer<'a> {
    class: usize,
    probabilities: &'a [f64],
    model: &'a ModelSummary,
}

/// The answer of `GET /healthz`.
#[derive(Serialize)]
struct Health<'a> {
    status: &'static str,
    model: &'a ModelSummary,
}

/// A request the server cannot answer with a class: its status and the message of the JSON
/// `{"error": ...}` answer.
#[derive(Debug, PartialEq)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, &serde_json::json!({ "error": self.message }))
    }
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    json_response(
        StatusCode::OK,
        &Health {
            status: "ok",
            model: &shared.summary,
        },
    )
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such page: the server has GET /, GET /healthz and POST /predict",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "wrong method: the server has GET /, GET /healthz and POST /predict",
    )
}

/// `POST /predict`: the class of the image in the body. The content type and a declared length
/// are checked before the body is read.
async fn predict(
    State(shared): State<Arc<Shared>>,
    request: Request,
) -> Result<Response, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {MAX_BODY} bytes (1 MiB)"),
        )
    };
    let headers = request.headers();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    let kind = body_kind(headers)?;
    let body =
        Bytes::from_request(request, &shared)
            .await
            .map_err(|rejection: BytesRejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large()
                } else {
                    ApiError::new(rejection.status(), rejection.body_text())
                }
            })?;
    let permit = shared
        .work
        .clone()
        .acquire_owned()
        .await
        .expect("the semaphore is never closed");
    let worker = shared.clone();
    let prediction = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        classify_body(&worker, kind, &body)
    })
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the classification of this image failed",
        )
    })??;
    Ok(json_response(
        StatusCode::OK,
        &Answer {
            class: prediction.class,
            probabilities: &prediction.probabilities,
            model: &shared.summary,
        },
    ))
}

/// What a request body holds, by its content type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyKind {
    /// A PNG or PNM file (its format is told by its first bytes, as for `predict`).
    Image,
    /// [`PixelsRequest`] JSON.
    Pixels,
}

/// The content types `POST /predict` takes.
const CONTENT_TYPES: &str = "image/png, image/x-portable-graymap or application/json";

fn body_kind(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
    let unsupported = |what: String| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("{what}; POST /predict takes {CONTENT_TYPES}"),
        )
    };
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(unsupported("the request has no Content-Type".to_owned()));
    };
    let mime = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "image/png" | "image/x-portable-graymap" | "image/x-portable-anymap" => Ok(BodyKind::Image),
        "application/json" => Ok(BodyKind::Pixels),
        _ => Err(unsupported(format!(
            "the Content-Type is {}",
            String::from_utf8_lossy(value.as_bytes())
        ))),
    }
}

/// The JSON form of an image: grey values row by row, 0 black to 1 white.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PixelsRequest {
    pixels: Vec<f64>,
    width: usize,
    height: usize,
}

/// The image in a JSON body.
fn pixels_image(body: &[u8]) -> Result<GrayImage, ApiError> {
    let request: PixelsRequest = serde_json::from_slice(body).map_err(|err| {
        ApiError::bad_request(format!(
            "the body is not JSON of the form {{\"pixels\": [...], \"width\": W, \"height\": H}}: {err}"
        ))
    })?;
    let PixelsRequest {
        pixels,
        width,
        height,
    } = request;
    if width == 0 || height == 0 {
        return Err(ApiError::bad_request(format!(
            "the image is empty ({width} x {height} pixels)"
        )));
    }
    match width.checked_mul(height) {
        Some(n) if n <= MAX_REQUEST_PIXELS => {
            if pixels.len() != n {
                return Err(ApiError::bad_request(format!(
                    "a {width} x {height} image has {n} pixels, but the request has {}",
                    pixels.len()
                )));
            }
        }
        _ => {
            return Err(ApiError::bad_request(format!(
                "the image is too large: {width} x {height} pixels (at most {MAX_REQUEST_PIXELS})"
            )));
        }
    }
    if let Some((i, v)) = pixels
        .iter()
        .enumerate()
        .find(|(_, v)| !(0.0..=1.0).contains(*v))
    {
        return Err(ApiError::bad_request(format!(
            "pixel {i} is {v}: grey values go from 0 (black) to 1 (white)"
        )));
    }
    Ok(GrayImage::new(width, height, pixels))
}

/// Decodes a request's image, prepares it as `predict` does and classifies it.
fn classify_body(
    shared: &Shared,
    kind: BodyKind,
    body: &[u8],
) -> Result<ImagePrediction, ApiError> {
    let image = match kind {
        BodyKind::Image => decode_image_within(body, Path::new(BODY_NAME), MAX_REQUEST_PIXELS)
            .map_err(|err| ApiError::bad_request(err.to_string()))?,
        BodyKind::Pixels => pixels_image(body)?,
    };
    let input = prepare_with(&image, shared.model.info().image_shape, shared.fit);
    let prediction = match &shared.model {
        AnyModel::F32(m) => classify(m, &input),
        AnyModel::F64(m) => classify(m, &input),
    };
    prediction.ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "the model gives NaN scores for this image: its weights are too large for {}",
                shared.model.dtype().name()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn kind(content_type: Option<&str>) -> Result<BodyKind, ApiError> {
        let mut headers = HeaderMap::new();
        if let Some(t) = content_type {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(t).unwrap());
        }
        body_kind(&headers)
    }

    #[test]
    fn the_content_type_says_how_the_body_is_read() {
        assert_eq!(kind(Some("image/png")), Ok(BodyKind::Image));
        assert_eq!(kind(Some("Image/PNG")), Ok(BodyKind::Image));
        assert_eq!(kind(Some("image/x-portable-graymap")), Ok(BodyKind::Image));
        assert_eq!(
            kind(Some("application/json; charset=utf-8")),
            Ok(BodyKind::Pixels)
        );
        let err = kind(Some("text/plain")).unwrap_err();
        assert_eq!(err.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(
            err.message,
            "the Content-Type is text/plain; POST /predict takes image/png, \
             image/x-portable-graymap or application/json"
        );
        let err = kind(None).unwrap_err();
        assert_eq!(err.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(err.message.starts_with("the request has no Content-Type"));
    }

    #[test]
    fn json_pixels_are_checked_before_they_make_an_image() {
        let image = pixels_image(br#"{"pixels": [0, 0.5, 1, 0.25], "width": 2, "height": 2}"#);
        assert_eq!(
            image,
            Ok(GrayImage::new(2, 2, vec![0.0, 0.5, 1.0, 0.25])),
            "a 2 x 2 image"
        );
        let message = |body: &str| pixels_image(body.as_bytes()).unwrap_err().message;
        for (body, expected) in [
            (
                r#"{"pixels": [0, 0.5, 1], "width": 2, "height": 2}"#,
                "a 2 x 2 image has 4 pixels, but the request has 3",
            ),
            (
                r#"{"pixels": [0, 1.5], "width": 2, "height": 1}"#,
                "pixel 1 is 1.5: grey values go from 0 (black) to 1 (white)",
            ),
            (
                r#"{"pixels": [-0.1], "width": 1, "height": 1}"#,
                "pixel 0 is -0.1: grey values go from 0 (black) to 1 (white)",
            ),
            (
                r#"{"pixels": [], "width": 0, "height": 3}"#,
                "the image is empty (0 x 3 pixels)",
            ),
            (
                r#"{"pixels": [], "width": 4096, "height": 4096}"#,
                "the image is too large: 4096 x 4096 pixels (at most 4194304)",
            ),
        ] {
            assert_eq!(message(body), expected, "{body}");
        }
        assert!(
            message(r#"{"pixels": [], "width": 18446744073709551615, "height": 2}"#)
                .contains("too large")
        );
        // JSON has no NaN or infinity; a number too large for f64 is refused by the parser.
        for body in [
            r#"{"pixels": [NaN], "width": 1, "height": 1}"#,
            r#"{"pixels": [1e999], "width": 1, "height": 1}"#,
            r#"{"pixels": [0], "width": 1, "height": 1, "depth": 1}"#,
            r#"{"pixels": [0], "width": 1}"#,
            "[0, 1]",
        ] {
            let m = message(body);
            assert!(
                m.starts_with("the body is not JSON of the form"),
                "{body}: {m}"
            );
        }
    }
}
