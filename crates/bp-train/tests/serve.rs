//! `bp-train serve` end to end: the real binary on a free port of this machine, hundreds of
//! requests at once from several threads, good and malformed mixed, every answer checked against
//! `bp-train predict`'s for the same image; a clean stop on SIGINT; bad flags and models.
#![cfg(unix)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use bp_data::read_idx_as;
use common::server::{Server, train_model};
use common::{TempDir, mnist_dir};
use ndarray::{ArrayD, Axis};
use serde_json::Value;

/// The model the tests serve, trained once per test binary.
fn model() -> &'static Path {
    static MODEL: OnceLock<(TempDir, std::path::PathBuf)> = OnceLock::new();
    &MODEL
        .get_or_init(|| {
            let dir = TempDir::new("serve");
            let model = train_model(dir.path());
            (dir, model)
        })
        .1
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// A status and the JSON of the body.
#[track_caller]
fn answer(mut response: ureq::http::Response<ureq::Body>) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.body_mut().read_to_string().expect("a body");
    assert_eq!(
        content_type.as_deref(),
        Some("application/json"),
        "{status}: {text}"
    );
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: {e}: {text}")),
    )
}

#[track_caller]
fn post(agent: &ureq::Agent, server: &Server, content_type: &str, body: &[u8]) -> (u16, Value) {
    answer(
        agent
            .post(server.url("/predict"))
            .header("Content-Type", content_type)
            .send(body)
            .expect("the server answers"),
    )
}

/// A test image of MNIST, in the forms a request can take, with the class `predict` gives it.
struct Digit {
    label: usize,
    /// 28x28 gray PNG, white on black, as MNIST stores it.
    png: Vec<u8>,
    /// 84x84 RGB PNG, black ink on white: inverted and scaled down by the preparation.
    ink_png: Vec<u8>,
    /// Binary PGM.
    pgm: Vec<u8>,
    /// `{"pixels": ..., "width": 28, "height": 28}`, the pixels of `png`.
    json: String,
    /// The class and the top probability (4 decimals) `bp-train predict --fit mnist` gives each
    /// form: png, ink_png, pgm.
    expected: Vec<(usize, String)>,
}

/// The first three MNIST test digits (7, 2, 1), classified by `bp-train predict` from files.
fn digits(dir: &Path) -> Vec<Digit> {
    let images: ArrayD<u8> = read_idx_as(mnist_dir().join("t10k-images-idx3-ubyte.gz"), 3).unwrap();
    let labels: ArrayD<u8> = read_idx_as(mnist_dir().join("t10k-labels-idx1-ubyte.gz"), 1).unwrap();
    let mut digits = Vec::new();
    let mut files = Vec::new();
    for i in 0..3 {
        let pixels: Vec<u8> = images.index_axis(Axis(0), i).iter().copied().collect();
        let png = common::png(28, 28, image::ColorType::L8, &pixels);
        let mut rgb = Vec::with_capacity(84 * 84 * 3);
        for y in 0..84 {
            for x in 0..84 {
                let v = 255 - pixels[(y / 3) * 28 + x / 3];
                rgb.extend([v, v, v]);
            }
        }
        let ink_png = common::png(84, 84, image::ColorType::Rgb8, &rgb);
        let mut pgm = b"P5\n28 28\n255\n".to_vec();
        pgm.extend(&pixels);
        let grey: Vec<f64> = pixels.iter().map(|&p| f64::from(p) / 255.0).collect();
        let json = serde_json::json!({"pixels": grey, "width": 28, "height": 28}).to_string();
        for (name, bytes) in [("png", &png), ("ink.png", &ink_png), ("pgm", &pgm)] {
            let path = dir.join(format!("digit{i}.{name}"));
            std::fs::write(&path, bytes).unwrap();
            files.push(path.to_str().unwrap().to_owned());
        }
        digits.push(Digit {
            label: usize::from(labels[[i]]),
            png,
            ink_png,
            pgm,
            json,
            expected: Vec::new(),
        });
    }
    let out = Command::new(env!("CARGO_BIN_EXE_bp-train"))
        .args(["predict", "--fit", "mnist", "--top", "1", "--model"])
        .arg(model())
        .args(&files)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // `NAME: CLASS  top: CLASS PROB ...`
    let classes: Vec<(usize, String)> = text
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[1].parse().unwrap(), f[4].trim_end_matches(',').to_owned())
        })
        .collect();
    assert_eq!(classes.len(), 9, "{text}");
    for (k, digit) in digits.iter_mut().enumerate() {
        digit.expected = classes[3 * k..3 * k + 3].to_vec();
        // The model is right about these easy digits, in every form.
        for (class, _) in &digit.expected {
            assert_eq!(*class, digit.label, "{text}");
        }
    }
    digits
}

/// Checks a good answer: the class and top probability `predict` gives the same image, ten
/// probabilities summing to 1, and the model's summary.
#[track_caller]
fn check_class(status: u16, body: &Value, expected: &(usize, String)) {
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["class"].as_u64(), Some(expected.0 as u64), "{body}");
    let p: Vec<f64> = body["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(p.len(), 10, "{body}");
    assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-5, "{body}");
    assert_eq!(format!("{:.4}", p[expected.0]), expected.1, "{body}");
    assert!(p.iter().all(|&q| q <= p[expected.0]), "{body}");
    check_model(&body["model"]);
}

#[track_caller]
fn check_model(model: &Value) {
    assert_eq!(model["file"], "model.safetensors", "{model}");
    assert_eq!(model["layers"], "affine 50, relu, affine 10", "{model}");
    assert_eq!(model["classes"], 10, "{model}");
    assert_eq!(model["dtype"], "f32", "{model}");
    assert_eq!(model["epoch"], 1, "{model}");
    let acc = model["test_acc"].as_f64().unwrap();
    assert!((0.9..1.0).contains(&acc), "{model}");
    assert!(
        model["description"]
            .as_str()
            .unwrap()
            .starts_with("TwoLayerNet 784-50-10"),
        "{model}"
    );
}

#[track_caller]
fn check_error(status: u16, body: &Value, expected_status: u16, says: &str) {
    assert_eq!(status, expected_status, "{body}");
    let message = body["error"].as_str().unwrap_or_else(|| panic!("{body}"));
    assert!(message.contains(says), "{says:?} not in {message:?}");
}

/// A request over 1 MiB, by its declared length: answered at once, before the body is sent.
fn oversized(server: &Server) -> (u16, Value) {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST /predict HTTP/1.1\r\nHost: {}\r\nContent-Type: image/png\r\n\
         Content-Length: 1048577\r\nConnection: close\r\n\r\n",
        server.addr
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{response}"));
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    (status, serde_json::from_str(body).unwrap())
}

#[test]
fn concurrent_requests_good_and_malformed_are_all_answered() {
    let dir = TempDir::new("serve-concurrent");
    let digits = digits(dir.path());
    let mut server = Server::start(model(), &[]);
    assert!(
        server.banner.contains("TwoLayerNet 784-50-10"),
        "{}",
        server.banner
    );
    assert!(
        server
            .banner
            .contains(&format!("open http://{}/ (Ctrl-C stops)", server.addr)),
        "{}",
        server.banner
    );

    const THREADS: usize = 8;
    const PER_THREAD: usize = 40;
    const KINDS: usize = 12;
    let counts = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (server, digits) = (&server, &digits);
                scope.spawn(move || {
                    let agent = agent();
                    let mut counts = [0usize; KINDS];
                    for i in 0..PER_THREAD {
                        let n = t * PER_THREAD + i;
                        let kind = (n * 7 + t) % KINDS;
                        let d = &digits[n % digits.len()];
                        counts[kind] += 1;
                        match kind {
                            0 => {
                                let (s, b) = post(&agent, server, "image/png", &d.png);
                                check_class(s, &b, &d.expected[0]);
                            }
                            1 => {
                                let (s, b) = post(&agent, server, "image/png", &d.ink_png);
                                check_class(s, &b, &d.expected[1]);
                            }
                            2 => {
                                let (s, b) =
                                    post(&agent, server, "image/x-portable-graymap", &d.pgm);
                                check_class(s, &b, &d.expected[2]);
                            }
                            3 => {
                                // The same pixels as the PNG: the same answer.
                                let (s, b) =
                                    post(&agent, server, "application/json", d.json.as_bytes());
                                check_class(s, &b, &d.expected[0]);
                            }
                            4 => {
                                let (s, b) = post(&agent, server, "image/png", &d.png[..60]);
                                check_error(s, &b, 400, "request body is not a valid PNG image");
                            }
                            5 => {
                                let (s, b) = post(&agent, server, "text/plain", b"seven");
                                check_error(s, &b, 415, "the Content-Type is text/plain");
                            }
                            6 => {
                                let short = d.json.replacen("[0.0,", "[", 1);
                                let (s, b) =
                                    post(&agent, server, "application/json", short.as_bytes());
                                check_error(s, &b, 400, "has 784 pixels, but the request has 783");
                            }
                            7 => {
                                let nan = d.json.replacen("[0.0,", "[NaN,", 1);
                                let (s, b) =
                                    post(&agent, server, "application/json", nan.as_bytes());
                                check_error(s, &b, 400, "is not JSON");
                            }
                            8 => {
                                let bright = d.json.replacen("[0.0,", "[2.5,", 1);
                                let (s, b) =
                                    post(&agent, server, "application/json", bright.as_bytes());
                                check_error(s, &b, 400, "pixel 0 is 2.5");
                            }
                            9 => {
                                let (s, b) =
                                    answer(agent.get(server.url("/healthz")).call().unwrap());
                                assert_eq!((s, &b["status"]), (200, &Value::from("ok")), "{b}");
                                check_model(&b["model"]);
                            }
                            10 => {
                                let (s, b) = oversized(server);
                                check_error(s, &b, 413, "larger than 1048576 bytes");
                            }
                            _ => {
                                let (s, b) =
                                    answer(agent.get(server.url("/nowhere")).call().unwrap());
                                check_error(s, &b, 404, "no such page");
                                let (s, b) =
                                    answer(agent.get(server.url("/predict")).call().unwrap());
                                check_error(s, &b, 405, "wrong method");
                            }
                        }
                    }
                    counts
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a client thread"))
            .collect::<Vec<_>>()
    });
    // Every kind of request was sent, many times.
    for kind in 0..KINDS {
        let sent: usize = counts.iter().map(|c| c[kind]).sum();
        assert!(sent >= 20, "kind {kind}: {sent} requests");
    }
    assert!(server.is_running());

    // Still up and right after all that.
    let (s, b) = post(&agent(), &server, "image/png", &digits[0].png);
    check_class(s, &b, &digits[0].expected[0]);
    let page = agent()
        .get(server.url("/"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(page.contains("<canvas id=\"pad\""), "{page}");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the page loads nothing from elsewhere"
    );

    let (status, stderr) = server.interrupt();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.ends_with("stopped\n"), "{stderr}");
    // One log line per request (the 405 kind sends two), plus the two after the burst.
    let requests = THREADS * PER_THREAD + counts.iter().map(|c| c[KINDS - 1]).sum::<usize>() + 2;
    let logged: Vec<&str> = stderr.lines().filter(|l| l.contains(" ms")).collect();
    assert_eq!(logged.len(), requests, "{stderr}");
    assert!(
        logged
            .iter()
            .any(|l| l.contains(" POST /predict 413 ") && l.starts_with("127.0.0.1:")),
        "{stderr}"
    );
}

#[test]
fn a_bad_address_or_model_is_a_one_line_error() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_bp-train"))
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        (out.status.code(), stderr)
    };
    let (code, err) = run(&["serve", "--model", "m.safetensors", "--addr", "localhost"]);
    assert_eq!(code, Some(2));
    assert!(
        err.starts_with("error: invalid value 'localhost' for '--addr <IP:PORT>'"),
        "{err}"
    );
    let dir = TempDir::new("serve-bad");
    let missing = dir.path().join("missing.safetensors");
    let (code, err) = run(&["serve", "--model", missing.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with("error: cannot read the model file") && err.contains("missing.safetensors"),
        "{err}"
    );
    // A port already taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, err) = run(&[
        "serve",
        "--model",
        model().to_str().unwrap(),
        "--addr",
        &addr,
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with(&format!("error: cannot listen on {addr}: ")),
        "{err}"
    );
}
