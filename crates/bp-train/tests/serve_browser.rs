//! `bp-train serve`'s page in a real browser: headless Chromium draws an MNIST test digit on the
//! canvas with pointer input, stroke by stroke, and the test reads the class the page shows; it
//! opens a PGM file with the file picker, clears the canvas, and checks that the page fits a
//! phone's width. The screenshot it takes is `target/tmp/serve.png` (README's `docs/serve.png`).
//!
//! Chromium is Debian's `chromium` (`/usr/bin/chromium`, or the path in `BP_CHROMIUM`), which
//! `.ci/run` installs. Without it the test passes with a note, so that `cargo test` needs no
//! browser on a developer's machine, unless `BP_BROWSER_TEST` is set (as `.ci/run` sets it):
//! then a missing browser fails the test.
#![cfg(unix)]
// The note that the test did not run, on a machine without Chromium.
#![allow(clippy::print_stderr)]

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bp_data::read_idx_as;
use common::server::{Server, train_model};
use common::{TempDir, mnist_dir};
use headless_chrome::protocol::cdp::{Emulation, Input, Page};
use headless_chrome::{Browser, LaunchOptions, Tab};
use ndarray::{Array2, ArrayD, Axis};

/// The browser, if there is one: `BP_CHROMIUM` or Debian's.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("BP_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    path.is_file().then_some(path)
}

/// The viewport of the screenshot (the window is larger: it has room for the browser's own bars).
const WIDTH: u32 = 880;
const HEIGHT: u32 = 560;

fn launch(chromium: PathBuf, profile: &Path) -> Browser {
    let args: Vec<&OsStr> = [
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ]
    .iter()
    .map(OsStr::new)
    .collect();
    let options = LaunchOptions::default_builder()
        .path(Some(chromium))
        .headless(true)
        .sandbox(false)
        .window_size(Some((WIDTH + 100, HEIGHT + 200)))
        .user_data_dir(Some(profile.to_path_buf()))
        .args(args)
        .idle_browser_timeout(Duration::from_secs(120))
        .build()
        .expect("launch options");
    Browser::new(options).expect("Chromium starts")
}

/// Makes the page's viewport `width` x `height` CSS pixels, of `scale` device pixels each.
fn viewport(tab: &Tab, width: u32, height: u32, scale: f64, mobile: bool) {
    tab.call_method(Emulation::SetDeviceMetricsOverride {
        width,
        height,
        device_scale_factor: scale,
        mobile,
        scale: None,
        screen_width: None,
        screen_height: None,
        position_x: None,
        position_y: None,
        dont_set_visible_size: None,
        screen_orientation: None,
        viewport: None,
        display_feature: None,
        device_posture: None,
    })
    .expect("a viewport");
    wait_for(
        tab,
        &format!("innerWidth === {width} && innerHeight === {height}"),
    );
}

/// The value of a JavaScript expression, as a string.
#[track_caller]
fn eval(tab: &Tab, expression: &str) -> String {
    let value = tab
        .evaluate(&format!("String({expression})"), false)
        .unwrap_or_else(|e| panic!("{expression}: {e}"))
        .value;
    match value {
        Some(serde_json::Value::String(s)) => s,
        other => panic!("{expression}: {other:?}"),
    }
}

/// Waits (at most 30 s) until `condition` is true in the page.
#[track_caller]
fn wait_for(tab: &Tab, condition: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while eval(tab, condition) != "true" {
        assert!(
            Instant::now() < deadline,
            "the page never had {condition}: {}",
            eval(
                tab,
                "document.getElementById('class').outerHTML + ' ' + \
                 document.getElementById('status').textContent"
            )
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One mouse event at (x, y) in CSS pixels of the viewport, with the left button held down or not.
fn mouse(tab: &Tab, kind: Input::DispatchMouseEventTypeOption, x: f64, y: f64, pressed: bool) {
    tab.call_method(Input::DispatchMouseEvent {
        Type: kind,
        x,
        y,
        button: Some(Input::MouseButton::Left),
        buttons: Some(u32::from(pressed)),
        click_count: Some(1),
        modifiers: None,
        timestamp: None,
        force: None,
        tangential_pressure: None,
        tilt_x: None,
        tilt_y: None,
        twist: None,
        delta_x: None,
        delta_y: None,
        pointer_Type: Some(Input::DispatchMouseEventPointer_TypeOption::Mouse),
    })
    .expect("a mouse event");
}

/// A straight stroke, from a point to a point (x, y).
type Stroke = ((f64, f64), (f64, f64));

/// Strokes that redraw a 28x28 digit: one per run of ink (pixels of at least 128) in each row,
/// from its first pixel's centre to its last's, in pixel units.
fn strokes(image: &Array2<u8>) -> Vec<Stroke> {
    let mut strokes = Vec::new();
    for (y, row) in image.rows().into_iter().enumerate() {
        let mut x = 0;
        while x < row.len() {
            if row[x] < 128 {
                x += 1;
                continue;
            }
            let start = x;
            while x < row.len() && row[x] >= 128 {
                x += 1;
            }
            let cy = y as f64 + 0.5;
            strokes.push(((start as f64 + 0.5, cy), (x as f64 - 0.5, cy)));
        }
    }
    strokes
}

/// Draws `strokes` (in pixels of a `side` x `side` image) on the canvas with the mouse: a press,
/// moves of at most four pixels of the image, a release. (Each event waits for Chromium's answer,
/// which the driver reads in turns of up to 100 ms: more moves would only slow the test down.)
fn draw(tab: &Tab, strokes: &[Stroke], side: f64) {
    let rect: Vec<f64> = eval(
        tab,
        "(r => [r.left, r.top, r.width, r.height].join(' '))(pad.getBoundingClientRect())",
    )
    .split(' ')
    .map(|v| v.parse().unwrap())
    .collect();
    let (left, top, scale) = (rect[0], rect[1], rect[2] / side);
    assert!((rect[2] - rect[3]).abs() < 1.0, "a square canvas: {rect:?}");
    for &((x0, y0), (x1, y1)) in strokes {
        let at = |x: f64, y: f64| (left + x * scale, top + y * scale);
        let (sx, sy) = at(x0, y0);
        let (ex, ey) = at(x1, y1);
        mouse(
            tab,
            Input::DispatchMouseEventTypeOption::MousePressed,
            sx,
            sy,
            true,
        );
        let steps = ((ex - sx).hypot(ey - sy) / (4.0 * scale)).ceil().max(1.0) as usize;
        for i in 1..=steps {
            let t = i as f64 / steps as f64;
            let (x, y) = (sx + (ex - sx) * t, sy + (ey - sy) * t);
            mouse(
                tab,
                Input::DispatchMouseEventTypeOption::MouseMoved,
                x,
                y,
                true,
            );
        }
        mouse(
            tab,
            Input::DispatchMouseEventTypeOption::MouseReleased,
            ex,
            ey,
            false,
        );
    }
}

/// The class the page shows, once it shows the answer to its latest request.
#[track_caller]
fn shown_class(tab: &Tab, requests: usize) -> String {
    wait_for(
        tab,
        &format!(
            "document.getElementById('class').dataset.answered === '{requests}' && \
             document.getElementById('class').dataset.sent === '{requests}'"
        ),
    );
    eval(tab, "document.getElementById('class').textContent")
}

#[test]
fn the_page_classifies_a_digit_drawn_with_the_mouse() {
    let Some(chromium) = chromium() else {
        let required = std::env::var_os("BP_BROWSER_TEST").is_some_and(|v| !v.is_empty());
        assert!(
            !required,
            "BP_BROWSER_TEST is set but there is no Chromium at /usr/bin/chromium or BP_CHROMIUM \
             (apt-get install chromium)"
        );
        eprintln!(
            "note: no Chromium (/usr/bin/chromium or BP_CHROMIUM): the browser test did not run"
        );
        return;
    };
    let dir = TempDir::new("serve-browser");
    let model = train_model(dir.path());
    let images: ArrayD<u8> = read_idx_as(mnist_dir().join("t10k-images-idx3-ubyte.gz"), 3).unwrap();
    let labels: ArrayD<u8> = read_idx_as(mnist_dir().join("t10k-labels-idx1-ubyte.gz"), 1).unwrap();
    let digit = |i: usize| {
        images
            .index_axis(Axis(0), i)
            .to_owned()
            .into_dimensionality::<ndarray::Ix2>()
            .unwrap()
    };
    let mut server = Server::start(&model, &[]);

    let profile = dir.path().join("chromium-profile");
    std::fs::create_dir_all(&profile).unwrap();
    let browser = launch(chromium, &profile);
    let tab = browser.new_tab().expect("a tab");
    tab.set_default_timeout(Duration::from_secs(30));
    viewport(&tab, WIDTH, HEIGHT, 1.0, false);
    tab.navigate_to(&server.url("/"))
        .unwrap()
        .wait_until_navigated()
        .unwrap();
    assert_eq!(tab.get_title().unwrap(), "bp: draw a digit");
    wait_for(
        &tab,
        "document.getElementById('model').textContent.includes('test accuracy')",
    );
    let model_line = eval(&tab, "document.getElementById('model').textContent");
    assert!(
        model_line.starts_with("model.safetensors: TwoLayerNet 784-50-10")
            && model_line.contains("(affine 50, relu, affine 10); test accuracy 9"),
        "{model_line}"
    );
    assert_eq!(
        eval(&tab, "document.querySelectorAll('#bars .bar').length"),
        "10"
    );

    // Test digit 0, a 7, drawn row by row: each stroke's end sends the canvas.
    let seven = strokes(&digit(0));
    assert_eq!(labels[[0]], 7);
    assert!(seven.len() > 10, "{seven:?}");
    draw(&tab, &seven, 28.0);
    assert_eq!(shown_class(&tab, seven.len()), "7");
    // The top bar is the 7's, and the percentages add up.
    assert_eq!(
        eval(
            &tab,
            "document.querySelector('.bar.top') === document.querySelectorAll('.bar')[7]"
        ),
        "true"
    );
    let percent: f64 = eval(
        &tab,
        "[...document.querySelectorAll('.pct')].reduce((s, e) => s + parseFloat(e.textContent), 0)",
    )
    .parse()
    .unwrap();
    assert!((percent - 100.0).abs() < 1.0, "{percent}");

    let png = tab
        .capture_screenshot(Page::CaptureScreenshotFormatOption::Png, None, None, true)
        .expect("a screenshot");
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve.png");
    std::fs::write(&shot, &png).unwrap();
    check_screenshot(&png);

    // Clear: the canvas is white again and the class unknown.
    let clear = tab.find_element("#clear").unwrap();
    clear.click().unwrap();
    wait_for(&tab, "document.getElementById('class').textContent === '?'");
    assert_eq!(
        eval(
            &tab,
            "pad.getContext('2d').getImageData(0, 0, 280, 280).data.every(v => v === 255)"
        ),
        "true"
    );

    // A PGM file through the picker (the browser gives it no type; the page tells it by its
    // name): test digit 1, a 2.
    assert_eq!(labels[[1]], 2);
    let pgm = dir.path().join("two.pgm");
    let mut bytes = b"P5\n28 28\n255\n".to_vec();
    bytes.extend(digit(1).iter());
    std::fs::write(&pgm, bytes).unwrap();
    let sent: usize = eval(&tab, "document.getElementById('class').dataset.sent")
        .parse()
        .unwrap();
    tab.find_element("#file")
        .unwrap()
        .set_input_files(&[pgm.to_str().unwrap()])
        .unwrap();
    assert_eq!(shown_class(&tab, sent + 1), "2");
    assert_eq!(
        eval(&tab, "document.getElementById('status').textContent"),
        "two.pgm: 2"
    );

    // On a phone's viewport, nothing is wider than the screen.
    viewport(&tab, 390, 844, 3.0, true);
    assert_eq!(
        eval(
            &tab,
            "document.documentElement.scrollWidth <= 390 && \
             pad.getBoundingClientRect().right <= 390 && pad.getBoundingClientRect().width >= 280"
        ),
        "true"
    );

    drop(tab);
    drop(browser);
    assert!(server.is_running());
    let (status, stderr) = server.interrupt();
    assert_eq!(status.code(), Some(0), "{stderr}");
    // The page, the model's line, a request per stroke and one for the file.
    let predictions = stderr.matches(" POST /predict 200 ").count();
    assert_eq!(predictions, seven.len() + 1, "{stderr}");
}

/// A screenshot is a PNG of the viewport's size that is not blank: the white canvas with black
/// ink, the blue class and bars, gray text.
fn check_screenshot(png: &[u8]) {
    let image = image::load_from_memory_with_format(png, image::ImageFormat::Png)
        .expect("the screenshot is a PNG")
        .to_rgb8();
    assert_eq!(image.dimensions(), (WIDTH, HEIGHT));
    let pixels = image.pixels().count() as f64;
    let share = |f: &dyn Fn(&image::Rgb<u8>) -> bool| {
        image.pixels().filter(|p| f(p)).count() as f64 / pixels
    };
    let black = share(&|p| p.0.iter().all(|&c| c < 60));
    let white = share(&|p| p.0.iter().all(|&c| c > 250));
    let blue = share(&|p| p.0[2] > 150 && p.0[0] < 100);
    assert!(black > 0.01, "ink: {black}");
    assert!(white > 0.05, "canvas: {white}");
    assert!(blue > 0.001, "class and bars: {blue}");
}
