//! `cargo xtask serve`: a trained run behind a small web page (docs/own-images.md).
//!
//! A CMBH run answers image queries — an uploaded file, or one of the indexed images picked on
//! the page — with the top-k images of its Hamming index (thumbnails, distances, class folders).
//! An HREM run answers captions with the top-k images of its test split. Plain HTML forms, no
//! JavaScript. Every route answers JSON with `format=json`.
//!
//! Inference runs on a blocking thread, one query at a time (the model sits behind a mutex).
//! A bad request — an undecodable or oversized upload, an unknown image id, an empty caption —
//! gets a 4xx with a message and the server keeps serving.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use burn::tensor::Device;
use clap::Args;
use serde::Deserialize;
use serde_json::{Value, json};

use relata_train::device::select_device;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// A `reproduce cmbh` run (image queries) or a `reproduce hrem` run (caption queries).
    #[arg(long)]
    run: PathBuf,
    /// A folder index made by `index cmbh` (default: the run's training database).
    #[arg(long)]
    index: Option<PathBuf>,
    /// CMBH: which bit length's run (default: the largest).
    #[arg(long)]
    bits: Option<usize>,
    /// Address to listen on; 127.0.0.1 keeps the server to this machine.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Results per query (a request's `k` overrides it, up to 100).
    #[arg(long, default_value_t = 12)]
    k: usize,
    /// Largest upload accepted, in MiB.
    #[arg(long, default_value_t = 8)]
    max_upload_mb: usize,
    /// Device.
    #[arg(long)]
    device: Option<String>,
}

/// The most results one request may ask for.
const MAX_K: usize = 100;
/// Thumbnail side in pixels.
const THUMB: u32 = 128;
/// Thumbnails kept in memory (about 30 KB each) before the cache starts over.
const THUMB_CACHE: usize = 4096;
/// Indexed images offered on the start page as queries.
const PICKS: usize = 24;

enum Engine {
    Cmbh(Box<relata_cmbh::search::SearchRun>),
    Hrem(Box<relata_hrem::search::SearchRun>),
}

struct App {
    engine: Mutex<Engine>,
    /// An HREM run (caption queries), known without taking the engine's lock.
    hrem: bool,
    device: Device,
    title: String,
    k: usize,
    max_upload: usize,
    thumbs: Mutex<HashMap<usize, Vec<u8>>>,
}

/// One result, as the page and the JSON show it.
struct Hit {
    id: usize,
    /// Hamming distance (CMBH) or similarity (HREM).
    measure: Measure,
    label: Option<String>,
    text: String,
    thumbnail: bool,
}

impl Hit {
    fn json(&self, rank: usize) -> Value {
        let (distance, score) = match self.measure {
            Measure::Distance(d) => (Some(d), None),
            Measure::Score(s) => (None, Some(s)),
            Measure::Pick => (None, None),
        };
        json!({
            "rank": rank + 1,
            "id": self.id,
            "distance": distance,
            "score": score,
            "label": self.label,
            "image": self.text,
            "thumbnail": self.thumbnail.then(|| format!("/thumb/{}", self.id)),
        })
    }
}

#[derive(Clone, Copy)]
enum Measure {
    /// An indexed image offered as a query.
    Pick,
    Distance(u32),
    Score(f32),
}

impl Measure {
    fn text(self) -> String {
        match self {
            Measure::Pick => "query".into(),
            Measure::Distance(d) => format!("d = {d}"),
            Measure::Score(s) => format!("s = {s:.3}"),
        }
    }
}

/// A request that cannot be answered: a status and a message for the person who sent it.
struct Refusal(StatusCode, String);

impl Refusal {
    fn bad(message: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, message.into())
    }
}

#[derive(Deserialize, Default)]
struct Params {
    /// Query by an indexed image.
    id: Option<usize>,
    /// Query by a caption (HREM).
    q: Option<String>,
    k: Option<usize>,
    format: Option<String>,
}

impl Params {
    fn json(&self) -> bool {
        self.format.as_deref() == Some("json")
    }
}

pub fn run(args: ServeArgs) -> Result<()> {
    let (choice, device) = select_device(args.device.as_deref())?;
    let (engine, title) = open(&args, &device)?;
    let hrem = matches!(engine, Engine::Hrem(_));
    let app = Arc::new(App {
        hrem,
        engine: Mutex::new(engine),
        device,
        title,
        k: args.k.clamp(1, MAX_K),
        max_upload: args.max_upload_mb.max(1) << 20,
        thumbs: Mutex::new(HashMap::new()),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the server's runtime")?;
    runtime.block_on(async move {
        let address = SocketAddr::new(args.host, args.port);
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| {
                format!("listening on {address}: is the port taken? pick another with --port")
            })?;
        let bound = listener.local_addr()?;
        // The first line of stdout is the address (tests and scripts read it).
        println!(
            "serving {} on http://{bound}/ ({choice}; Ctrl-C stops)",
            app.title
        );
        use std::io::Write as _;
        std::io::stdout().flush()?;
        let limit = app.max_upload + (64 << 10);
        let router = Router::new()
            .route("/", get(home))
            .route("/search", get(search_get).post(search_post))
            .route("/thumb/{id}", get(thumbnail))
            .layer(DefaultBodyLimit::max(limit))
            .with_state(app);
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("serving")
    })
}

/// Opens the run: HREM when `RUN/config.json` says so, CMBH otherwise.
fn open(args: &ServeArgs, device: &Device) -> Result<(Engine, String)> {
    let method = std::fs::read_to_string(args.run.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v.get("method").and_then(Value::as_str).map(String::from));
    if method.as_deref() == Some("hrem") {
        if args.index.is_some() {
            bail!(
                "--index is for CMBH runs; {} is an HREM run, which searches its test split",
                args.run.display()
            );
        }
        let run = relata_hrem::search::SearchRun::open(&args.run, device)?;
        let split = run.data.split(&run.split)?;
        let title = format!(
            "HREM run {} ({} {} images)",
            args.run.display(),
            split.num_images,
            run.split
        );
        return Ok((Engine::Hrem(Box::new(run)), title));
    }
    let mut run = relata_cmbh::search::SearchRun::open(&args.run, args.bits, device)?;
    let mut what = "its training database".to_string();
    if let Some(index) = &args.index {
        run = run.with_folder_index(index)?;
        what = format!("index {}", index.display());
    }
    let title = format!(
        "CMBH run {} ({} bits, {what}: {} images)",
        run.dir.display(),
        run.encoder.bits(),
        run.index.len()
    );
    Ok((Engine::Cmbh(Box::new(run)), title))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:sans-serif;margin:16px;background:#fff;color:#222}\
form{margin:8px 0}.grid{display:flex;flex-wrap:wrap;gap:12px}\
figure{margin:0;width:144px}figure img,figure .none{display:block;width:128px;height:128px;\
border:4px solid #1e5ad7;background:#fff;object-fit:contain}\
figure .none{font-size:12px;overflow:hidden}figcaption{font-size:12px;word-break:break-all}\
.error{color:#b00}img.query{border:2px solid #999;object-fit:contain}";

/// The page around `body`: the run, the query form (keeping the request's `k` and caption).
fn page(app: &App, body: &str, k: usize, caption: &str) -> String {
    let form = if app.hrem {
        format!(
            "<form action=\"/search\" method=\"get\">Caption: <input name=\"q\" size=\"50\" \
             value=\"{}\"> \
             k <input name=\"k\" size=\"3\" value=\"{k}\"> <button>Search</button></form>",
            escape(caption)
        )
    } else {
        format!(
            "<form action=\"/search\" method=\"post\" enctype=\"multipart/form-data\">\
             Query image: <input type=\"file\" name=\"image\" accept=\"image/*\"> \
             k <input name=\"k\" size=\"3\" value=\"{k}\"> <button>Search</button></form>"
        )
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>relata search</title>\
         <style>{STYLE}</style></head><body><h1>relata search</h1><p>{}</p>{form}{body}\
         </body></html>",
        escape(&app.title)
    )
}

fn grid(hits: &[Hit], id: &str) -> String {
    let mut out = format!("<div class=\"grid\" id=\"{id}\">");
    for (rank, h) in hits.iter().enumerate() {
        let picture = if h.thumbnail {
            format!(
                "<a href=\"/search?id={id}\"><img src=\"/thumb/{id}\" alt=\"\" \
                 width=\"{THUMB}\" height=\"{THUMB}\"></a>",
                id = h.id
            )
        } else {
            format!("<div class=\"none\">{}</div>", escape(&h.text))
        };
        let label = h.label.as_deref().map(escape).unwrap_or_default();
        let _ = write!(
            out,
            "<figure class=\"hit\">{picture}<figcaption>#{} · {} · {label}<br>{}\
             </figcaption></figure>",
            rank + 1,
            escape(&h.measure.text()),
            escape(&h.text)
        );
    }
    out.push_str("</div>");
    out
}

async fn home(State(app): State<Arc<App>>) -> Response {
    let picks = tokio::task::spawn_blocking({
        let app = app.clone();
        move || picks(&app)
    })
    .await
    .unwrap_or_default();
    let body = if picks.is_empty() {
        String::new()
    } else {
        format!("<h2>Or pick an indexed image</h2>{}", grid(&picks, "picks"))
    };
    Html(page(&app, &body, app.k, "")).into_response()
}

/// The first indexed images, offered as queries (CMBH).
fn picks(app: &App) -> Vec<Hit> {
    let engine = app.engine.lock().unwrap_or_else(|e| e.into_inner());
    let Engine::Cmbh(run) = &*engine else {
        return Vec::new();
    };
    run.database
        .iter()
        .take(PICKS)
        .map(|e| Hit {
            id: e.index,
            measure: Measure::Pick,
            label: e.class.clone(),
            text: e.image.clone(),
            thumbnail: Path::new(&e.image).is_file(),
        })
        .collect()
}

async fn search_get(State(app): State<Arc<App>>, Query(params): Query<Params>) -> Response {
    let json = params.json();
    let query = match (params.id, params.q.clone()) {
        (Some(id), _) => QueryKind::Indexed(id),
        (None, Some(q)) => QueryKind::Caption(q),
        (None, None) => {
            return refuse(
                &app,
                json,
                Refusal::bad("give `id` (an indexed image) or `q` (a caption)"),
            );
        }
    };
    answer(app, params, query, json).await
}

async fn search_post(
    State(app): State<Arc<App>>,
    Query(mut params): Query<Params>,
    multipart: Multipart,
) -> Response {
    let json = params.json();
    match read_upload(&app, multipart, &mut params).await {
        Ok((name, bytes)) => answer(app, params, QueryKind::Upload(name, bytes), json).await,
        Err(r) => refuse(&app, json, r),
    }
}

enum QueryKind {
    Indexed(usize),
    Upload(String, Vec<u8>),
    Caption(String),
}

/// The `image` field of a multipart form (and a `k` field, if any).
async fn read_upload(
    app: &App,
    mut multipart: Multipart,
    params: &mut Params,
) -> Result<(String, Vec<u8>), Refusal> {
    let too_big = || {
        Refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the upload is larger than this server's limit of {} MiB (--max-upload-mb)",
                app.max_upload >> 20
            ),
        )
    };
    let mut image = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_big()),
            Err(e) => return Err(Refusal::bad(format!("reading the form: {}", e.body_text()))),
        };
        let name = field.name().unwrap_or_default().to_string();
        let file = field.file_name().unwrap_or("upload").to_string();
        let bytes = match field.bytes().await {
            Ok(b) => b,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_big()),
            Err(e) => {
                return Err(Refusal::bad(format!(
                    "reading the upload: {}",
                    e.body_text()
                )));
            }
        };
        match name.as_str() {
            "image" => image = Some((file, bytes.to_vec())),
            "k" => {
                let text = String::from_utf8_lossy(&bytes).trim().to_string();
                if !text.is_empty() {
                    params.k =
                        Some(text.parse().map_err(|_| {
                            Refusal::bad(format!("k = `{text}`: give a whole number"))
                        })?);
                }
            }
            _ => {}
        }
    }
    match image {
        Some((_, bytes)) if bytes.len() > app.max_upload => Err(too_big()),
        Some((name, bytes)) if !bytes.is_empty() => Ok((name, bytes)),
        _ => Err(Refusal::bad(
            "no image in the form: send the file in a multipart field named `image`",
        )),
    }
}

async fn answer(app: Arc<App>, params: Params, query: QueryKind, json: bool) -> Response {
    let k = match params.k {
        None => app.k,
        Some(k) if (1..=MAX_K).contains(&k) => k,
        Some(k) => {
            return refuse(
                &app,
                json,
                Refusal::bad(format!("k = {k}: use 1 to {MAX_K}")),
            );
        }
    };
    let described = match &query {
        QueryKind::Indexed(id) => format!("indexed image {id}"),
        QueryKind::Upload(name, _) => format!("upload {name}"),
        QueryKind::Caption(q) => format!("caption “{q}”"),
    };
    let worker = app.clone();
    let found = tokio::task::spawn_blocking(move || search(&worker, query, k))
        .await
        .unwrap_or_else(|e| {
            Err(Refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the search failed: {e}"),
            ))
        });
    let hits = match found {
        Ok(h) => h,
        Err(r) => return refuse(&app, json, r),
    };
    if json {
        let hits: Vec<Value> = hits.iter().enumerate().map(|(r, h)| h.json(r)).collect();
        return axum::Json(json!({ "query": described, "k": k, "hits": hits })).into_response();
    }
    let preview = match (params.id, hits.first()) {
        (Some(id), Some(h)) if h.thumbnail => format!(
            "<p>Query: <img class=\"query\" src=\"/thumb/{id}\" alt=\"\" width=\"64\" \
             height=\"64\"></p>"
        ),
        _ => String::new(),
    };
    let body = format!(
        "<h2>Top {} for {}</h2>{preview}{}",
        hits.len(),
        escape(&described),
        grid(&hits, "results")
    );
    Html(page(
        &app,
        &body,
        k,
        params.q.as_deref().unwrap_or_default(),
    ))
    .into_response()
}

fn search(app: &App, query: QueryKind, k: usize) -> Result<Vec<Hit>, Refusal> {
    let engine = app.engine.lock().unwrap_or_else(|e| e.into_inner());
    match (&*engine, query) {
        (Engine::Cmbh(run), QueryKind::Caption(_)) => Err(Refusal::bad(format!(
            "{} answers image queries (upload one, or `id`); captions need an HREM run",
            run.dir.display()
        ))),
        (Engine::Hrem(_), QueryKind::Indexed(_) | QueryKind::Upload(..)) => Err(Refusal::bad(
            "an HREM run answers captions (`q`); image queries need a CMBH run",
        )),
        (Engine::Cmbh(run), QueryKind::Indexed(id)) => {
            let entry = run.database.get(id).ok_or_else(|| {
                Refusal(
                    StatusCode::NOT_FOUND,
                    format!(
                        "no indexed image {id}: the index holds 0..{}",
                        run.index.len()
                    ),
                )
            })?;
            let image =
                relata_dataset::source::decode_rgb(Path::new(&entry.image)).map_err(|e| {
                    Refusal(
                        StatusCode::NOT_FOUND,
                        format!("indexed image {id} cannot be read as a query: {e}"),
                    )
                })?;
            image_hits(app, run, image, k)
        }
        (Engine::Cmbh(run), QueryKind::Upload(name, bytes)) => {
            image_hits(app, run, decode_upload(&name, &bytes)?, k)
        }
        (Engine::Hrem(run), QueryKind::Caption(q)) => {
            if q.trim().is_empty() {
                return Err(Refusal::bad("the caption is empty: type a few words"));
            }
            let hits = run
                .text_to_images(&q, k, &app.device)
                .map_err(|e| Refusal::bad(format!("the caption cannot be encoded: {e}")))?;
            // Precomputed region features carry no pixels: an image is its id and first caption.
            Ok(hits
                .into_iter()
                .map(|h| Hit {
                    id: h.index,
                    measure: Measure::Score(h.score),
                    label: Some(format!("image {}", h.index)),
                    text: h.text,
                    thumbnail: false,
                })
                .collect())
        }
    }
}

/// The `k` nearest indexed images to `image`.
fn image_hits(
    app: &App,
    run: &relata_cmbh::search::SearchRun,
    image: image::RgbImage,
    k: usize,
) -> Result<Vec<Hit>, Refusal> {
    let hits = run.search_rgb(image, k, &app.device).map_err(|e| {
        Refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the search failed: {e}"),
        )
    })?;
    Ok(hits
        .into_iter()
        .map(|h| Hit {
            id: h.entry.index,
            measure: Measure::Distance(h.distance),
            label: h.entry.class.clone().or(Some(h.entry.label.to_string())),
            thumbnail: Path::new(&h.entry.image).is_file(),
            text: h.entry.image,
        })
        .collect())
}

/// An upload decoded to RGB, with limits on its size in pixels, or a 400 saying why not.
fn decode_upload(name: &str, bytes: &[u8]) -> Result<image::RgbImage, Refusal> {
    let refuse = |reason: String| {
        Refusal::bad(format!(
            "the upload `{name}` is not an image this server can decode (JPEG, PNG, BMP): {reason}"
        ))
    };
    if let Some(reason) = relata_dataset::source::truncation(bytes) {
        return Err(refuse(reason));
    }
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| refuse(e.to_string()))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(16_384);
    limits.max_image_height = Some(16_384);
    limits.max_alloc = Some(512 << 20);
    reader.limits(limits);
    let image = reader.decode().map_err(|e| refuse(e.to_string()))?;
    Ok(image.into_rgb8())
}

async fn thumbnail(State(app): State<Arc<App>>, UrlPath(id): UrlPath<usize>) -> Response {
    let worker = app.clone();
    let made = tokio::task::spawn_blocking(move || thumbnail_png(&worker, id))
        .await
        .unwrap_or_else(|e| Err(Refusal(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())));
    match made {
        Ok(png) => ([(header::CONTENT_TYPE, "image/png")], png).into_response(),
        Err(Refusal(status, message)) => (status, message).into_response(),
    }
}

fn thumbnail_png(app: &App, id: usize) -> Result<Vec<u8>, Refusal> {
    if let Some(png) = app
        .thumbs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&id)
    {
        return Ok(png.clone());
    }
    let file = {
        let engine = app.engine.lock().unwrap_or_else(|e| e.into_inner());
        match &*engine {
            Engine::Cmbh(run) => run.database.get(id).map(|e| PathBuf::from(&e.image)),
            Engine::Hrem(_) => None,
        }
    };
    let missing = || Refusal(StatusCode::NOT_FOUND, format!("no image file for id {id}"));
    let file = file.filter(|f| f.is_file()).ok_or_else(missing)?;
    let image = relata_dataset::source::decode_rgb(&file)
        .map_err(|e| Refusal(StatusCode::NOT_FOUND, e.to_string()))?;
    // The longer side fitted to the thumbnail, the aspect ratio kept.
    let scale = THUMB as f32 / image.width().max(image.height()) as f32;
    let small = image::imageops::resize(
        &image,
        ((image.width() as f32 * scale).round() as u32).max(1),
        ((image.height() as f32 * scale).round() as u32).max(1),
        image::imageops::FilterType::Triangle,
    );
    let mut png = Vec::new();
    small
        .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| Refusal(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut cache = app.thumbs.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= THUMB_CACHE {
        cache.clear();
    }
    cache.insert(id, png.clone());
    Ok(png)
}

fn refuse(app: &App, json: bool, Refusal(status, message): Refusal) -> Response {
    if json {
        return (status, axum::Json(json!({ "error": message }))).into_response();
    }
    let body = format!("<p class=\"error\">{}</p>", escape(&message));
    (status, Html(page(app, &body, app.k, ""))).into_response()
}
