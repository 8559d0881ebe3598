//! `cargo xtask serve` end to end: a smoke CMBH run indexes the image-folder fixture, the server
//! starts on a free port and is queried over HTTP (by an indexed image, by an upload, and with
//! bad uploads it must refuse and survive), and headless Chromium screenshots the results page,
//! whose grid must show k thumbnails.
//!
//! The screenshot needs Debian's `chromium` (`.ci/run` installs it and sets
//! `RELATA_REQUIRE_CHROMIUM=1`, which turns a missing browser into a failure; elsewhere the
//! screenshot part is skipped with a message). `RELATA_CHROMIUM` names another binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn xtask(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/datasets")
}

/// The server process, killed when the test ends however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Reply {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One HTTP/1.1 request on its own connection.
fn request(address: &str, method: &str, path: &str, content_type: &str, body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(address).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) before reading the whole body and close: a failed write of
    // the rest is expected then.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP reply: {}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let content_type = header("content-type");
    let mut body = raw[split + 4..].to_vec();
    if header("transfer-encoding").eq_ignore_ascii_case("chunked") {
        body = dechunk(&body);
    }
    Reply {
        status,
        content_type,
        body,
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line = body.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..line]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[line + 2..line + 2 + size]);
        body = &body[line + 2 + size + 2..];
    }
}

fn get(address: &str, path: &str) -> Reply {
    request(address, "GET", path, "text/plain", b"")
}

/// A multipart form with one file field `image` holding `bytes`.
fn upload(address: &str, path: &str, name: &str, bytes: &[u8]) -> Reply {
    let boundary = "relata-test-boundary-7f3a";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    request(
        address,
        "POST",
        path,
        &format!("multipart/form-data; boundary={boundary}"),
        &body,
    )
}

/// Starts `serve ARGS --port 0`; the server, its address and its first line.
fn serve(args: &[&str]) -> (Server, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("serve")
        .args(args)
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let server = Server(child);
    let address = first
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in the first line: {first}"))
        .to_string();
    // It listens on 127.0.0.1 unless told otherwise.
    assert!(address.starts_with("127.0.0.1:"), "{first}");
    (server, address, first)
}

fn run_dir(out: &str) -> PathBuf {
    out.lines()
        .find_map(|l| l.strip_prefix("run directory: "))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no run directory in {out}"))
}

/// An HREM run answers a typed caption with the top-k images of its test split (each shown as
/// its id and first caption: precomputed region features carry no pixels).
#[test]
fn serve_answers_captions_for_an_hrem_run() {
    let root = tempfile::tempdir().unwrap();
    let runs = root.path().display().to_string();
    let (ok, out, err) = xtask(&[
        "reproduce",
        "hrem",
        "--preset",
        "smoke",
        "--variant",
        "full",
        "--out",
        &runs,
        "--quiet",
    ]);
    assert!(ok, "{err}");
    let run = run_dir(&out);
    let (_server, address, first) = serve(&["--run", &run.display().to_string(), "--k", "5"]);
    assert!(first.contains("HREM run"), "{first}");
    let home = get(&address, "/").text();
    assert!(home.contains("name=\"q\""), "{home}");
    let found = get(
        &address,
        "/search?q=a+red+circle+left+of+a+blue+square&format=json",
    );
    assert_eq!(found.status, 200, "{}", found.text());
    let hits = found.json()["hits"].as_array().unwrap().clone();
    assert_eq!(hits.len(), 5);
    assert!(
        hits.windows(2)
            .all(|w| w[0]["score"].as_f64() >= w[1]["score"].as_f64()),
        "{hits:?}"
    );
    assert!(hits.iter().all(|h| h["image"].is_string()), "{hits:?}");
    let page = get(&address, "/search?q=a+red+circle&k=3").text();
    assert_eq!(page.matches("class=\"hit\"").count(), 3, "{page}");
    // The form keeps the caption asked for.
    assert!(page.contains("value=\"a red circle\""), "{page}");
    let empty = get(&address, "/search?q=+&format=json");
    assert_eq!(empty.status, 400);
    let image = get(&address, "/search?id=0");
    assert_eq!(image.status, 400);
    assert!(image.text().contains("captions"), "{}", image.text());
}

#[test]
fn serve_answers_queries_refuses_bad_uploads_and_renders_k_thumbnails() {
    let root = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.display().to_string();
    let runs = root.path().join("runs");
    let (ok, out, err) = xtask(&[
        "reproduce",
        "cmbh",
        "--preset",
        "smoke",
        "--bits",
        "8",
        "--out",
        &s(&runs),
        "--quiet",
    ]);
    assert!(ok, "{err}");
    let run = run_dir(&out);
    let images = fixtures().join("imagefolder").canonicalize().unwrap();
    let index = root.path().join("index");
    let (ok, _, err) = xtask(&[
        "index",
        "cmbh",
        "--run",
        &s(&run),
        "--images",
        &s(&images),
        "--out",
        &s(&index),
    ]);
    assert!(ok, "{err}");

    let k = 4;
    let (_server, address, first) = serve(&[
        "--run",
        &s(&run),
        "--index",
        &s(&index),
        "--k",
        &k.to_string(),
        "--max-upload-mb",
        "1",
    ]);
    assert!(first.contains("9 images"), "{first}");

    // The start page: the upload form and the indexed images to pick from.
    let home = get(&address, "/");
    assert_eq!(home.status, 200);
    let html = home.text();
    assert!(html.contains("type=\"file\" name=\"image\""), "{html}");
    assert_eq!(html.matches("/thumb/").count(), 9, "{html}");

    // By an indexed image: k hits, the query itself at distance 0, labels from the folders.
    let by_id = get(&address, "/search?id=2&format=json");
    assert_eq!(by_id.status, 200, "{}", by_id.text());
    let hits = by_id.json()["hits"].as_array().unwrap().clone();
    assert_eq!(hits.len(), k);
    assert!(
        hits.iter().any(|h| h["id"] == 2 && h["distance"] == 0),
        "{hits:?}"
    );
    assert!(hits.iter().all(|h| h["label"].is_string()), "{hits:?}");

    // By an upload: the same file uploaded finds itself at distance 0, as search cmbh does.
    let file = images.join("test/fox/fox_2.jpg");
    let bytes = std::fs::read(&file).unwrap();
    let up = upload(&address, "/search?format=json&k=3", "fox.jpg", &bytes);
    assert_eq!(up.status, 200, "{}", up.text());
    let hits = up.json()["hits"].as_array().unwrap().clone();
    assert_eq!(hits.len(), 3);
    assert!(
        hits.iter()
            .any(|h| h["distance"] == 0 && h["image"] == s(&file)),
        "{hits:?}"
    );
    // The thumbnails are PNGs.
    let thumb = get(&address, &format!("/thumb/{}", hits[0]["id"]));
    assert_eq!(thumb.status, 200);
    assert_eq!(thumb.content_type, "image/png");
    assert!(image::load_from_memory(&thumb.body).is_ok());

    // Bad requests: a 4xx with a message, and the server keeps serving.
    let garbage = upload(
        &address,
        "/search?format=json",
        "notes.jpg",
        b"not an image",
    );
    assert_eq!(garbage.status, 400, "{}", garbage.text());
    assert!(
        garbage.json()["error"]
            .as_str()
            .unwrap()
            .contains("`notes.jpg` is not an image"),
        "{}",
        garbage.text()
    );
    let cut = upload(&address, "/search", "cut.jpg", &bytes[..bytes.len() / 2]);
    assert_eq!(cut.status, 400);
    assert!(cut.text().contains("truncated JPEG"), "{}", cut.text());
    let big = upload(
        &address,
        "/search?format=json",
        "big.png",
        &vec![7u8; 3 << 20],
    );
    assert_eq!(big.status, 413, "{}", big.text());
    assert!(big.text().contains("--max-upload-mb"), "{}", big.text());
    let none = request(
        &address,
        "POST",
        "/search",
        "multipart/form-data; boundary=x",
        b"--x--\r\n",
    );
    assert_eq!(none.status, 400, "{}", none.text());
    let missing = get(&address, "/search?id=99&format=json");
    assert_eq!(missing.status, 404);
    assert!(missing.text().contains("0..9"), "{}", missing.text());
    let caption = get(&address, "/search?q=a+red+bird");
    assert_eq!(caption.status, 400);
    assert!(caption.text().contains("HREM"), "{}", caption.text());
    let bad_k = get(&address, "/search?id=1&k=0");
    assert_eq!(bad_k.status, 400);
    assert_eq!(get(&address, "/search?id=1&format=json").status, 200);
    // The page's form keeps the k asked for; its grid holds that many results.
    let page = get(&address, "/search?id=1&k=3").text();
    assert!(page.contains("name=\"k\" size=\"3\" value=\"3\""), "{page}");
    assert_eq!(page.matches("class=\"hit\"").count(), 3, "{page}");

    screenshot_shows_k_thumbnails(&address, k, root.path());
}

/// Headless Chromium renders `/search?id=0&k=K`; the screenshot must show K thumbnails: K
/// frames in the results' border colour, each around a loaded picture (a failed image leaves
/// its frame's inside blank).
fn screenshot_shows_k_thumbnails(address: &str, k: usize, dir: &Path) {
    let browser = std::env::var("RELATA_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let shot = dir.join("results.png");
    let url = format!("http://{address}/search?id=0&k={k}");
    let ran = Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--window-size=1000,700",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.join("chromium").display()
        ))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output();
    let output = match ran {
        Ok(o) => o,
        Err(e) if std::env::var_os("RELATA_REQUIRE_CHROMIUM").is_none() => {
            eprintln!(
                "screenshot skipped: `{browser}` did not start ({e}); install Debian's \
                 `chromium` (CI does, and requires it)"
            );
            return;
        }
        Err(e) => panic!("`{browser}` did not start ({e}): apt-get install chromium"),
    };
    assert!(
        shot.is_file(),
        "no screenshot from {browser}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let png = image::open(&shot).unwrap().into_rgb8();
    let frames = thumbnail_frames(&png);
    assert_eq!(
        frames.len(),
        k,
        "{} framed thumbnails in {} (expected {k}): {frames:?}",
        frames.len(),
        shot.display()
    );
}

/// Bounding boxes `(x0, y0, x1, y1)` of the results' frames (the page draws each thumbnail in a
/// 4-pixel #1e5ad7 border, 136 pixels outside) whose inside is not blank.
fn thumbnail_frames(png: &image::RgbImage) -> Vec<(u32, u32, u32, u32)> {
    let (w, h) = png.dimensions();
    let is_frame = |x: u32, y: u32| {
        let p = png.get_pixel(x, y).0;
        (p[0] as i32 - 0x1e).abs() < 24
            && (p[1] as i32 - 0x5a).abs() < 24
            && (p[2] as i32 - 0xd7).abs() < 24
    };
    let mut seen = vec![false; (w * h) as usize];
    let mut frames = Vec::new();
    for y in 0..h {
        for x in 0..w {
            if seen[(y * w + x) as usize] || !is_frame(x, y) {
                continue;
            }
            // Flood fill one connected frame.
            let (mut x0, mut y0, mut x1, mut y1) = (x, y, x, y);
            let mut stack = vec![(x, y)];
            seen[(y * w + x) as usize] = true;
            while let Some((cx, cy)) = stack.pop() {
                (x0, y0, x1, y1) = (x0.min(cx), y0.min(cy), x1.max(cx), y1.max(cy));
                let near = [
                    (cx.wrapping_sub(1), cy),
                    (cx + 1, cy),
                    (cx, cy.wrapping_sub(1)),
                    (cx, cy + 1),
                ];
                for (nx, ny) in near {
                    if nx < w && ny < h && !seen[(ny * w + nx) as usize] && is_frame(nx, ny) {
                        seen[(ny * w + nx) as usize] = true;
                        stack.push((nx, ny));
                    }
                }
            }
            let (fw, fh) = (x1 - x0 + 1, y1 - y0 + 1);
            if !(130..=142).contains(&fw) || !(130..=142).contains(&fh) {
                continue;
            }
            // The inside: a loaded picture varies, a missing one is blank.
            let inside: Vec<[u8; 3]> = (y0 + 8..y1 - 8)
                .flat_map(|y| (x0 + 8..x1 - 8).map(move |x| (x, y)))
                .map(|(x, y)| png.get_pixel(x, y).0)
                .collect();
            let distinct = inside
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len();
            if distinct > 16 {
                frames.push((x0, y0, x1, y1));
            }
        }
    }
    frames
}
