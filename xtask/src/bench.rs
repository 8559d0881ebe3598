//! `cargo xtask bench metrics`: relata-metrics timed side by side with the references
//! (FAISS `IndexBinaryFlat`, vectorised numpy mAP, the VSE-family numpy R@K evaluator) in one
//! run, on the same inputs, with results cross-checked; prints a Markdown table of ratios and
//! writes it as JSON.
//!
//! The criterion benches in `benches/` track relata's own numbers over time; this command is
//! the comparison against the reference implementations that `docs/notes/2026-11-performance-log.md` reports.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use clap::{Args, ValueEnum};
use relata_metrics::npy::{NpyArray, write_npy};
use relata_metrics::{
    HammingIndex, HashingEvalConfig, Labels, PackedCodes, evaluate_hashing, recall_at_k,
};
use serde_json::{Value, json};

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Suite {
    /// Hamming top-k vs FAISS, mAP@all vs numpy, R@K vs numpy.
    Metrics,
    /// JPEG decode + resize + crop + normalise into 224×224 batches vs torchvision's PIL
    /// pipeline (`DataLoader`, 2 workers) on the same files.
    Data,
    /// ResNet-18/50 forward and forward+backward on flex (and tch when built with it) vs PyTorch CPU.
    Backbone,
    /// ResNet-18's layers one at a time (convolutions, batch norm, max pool, ReLU), forward and
    /// forward+backward, on flex (and tch) vs PyTorch CPU: which op loses.
    Ops,
    /// ISL's host work per backbone step, GAN step and mining batch at N = 50,000, before and
    /// after it moved to the device (no Python reference: the comparison is with the old code).
    Isl,
    /// CSRMS's Fuzzy ART over 50,000 × 512 features (one relation refresh), on one thread and
    /// on every core.
    Art,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// What to benchmark.
    #[arg(value_enum)]
    suite: Suite,
    /// Python with numpy and faiss-cpu (the references).
    #[arg(long, env = "RELATA_PYTHON", default_value = "python3")]
    python: String,
    /// Smaller sizes (a minute instead of several).
    #[arg(long)]
    quick: bool,
    /// Where to write the JSON results (default `target/bench/<suite>.json`).
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Deterministic xorshift bytes.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn best_of<T>(reps: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::INFINITY;
    let mut out = None;
    for _ in 0..reps {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed().as_secs_f64());
        out = Some(r);
    }
    (best, out.expect("reps ≥ 1"))
}

/// The metrics references' imports.
const NUMPY_FAISS: &str = "numpy faiss-cpu";

/// Runs a reference script and parses its JSON; `needs` names the Python packages it imports,
/// for the install hint when it fails.
pub(crate) fn python(py: &str, script: &Path, args: &[&str], needs: &str) -> Result<Value> {
    let out = Command::new(py)
        .arg(script)
        .args(args)
        .output()
        .with_context(|| format!("running {py}"))?;
    if !out.status.success() {
        bail!(
            "{} {} failed: {}\n(this reference needs {needs}: `{py} -m pip install {needs}`, or \
             pass --python)",
            script.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("reference output is not JSON")
}

fn single_thread<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T> {
    Ok(rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()?
        .install(f))
}

pub fn run(args: BenchArgs, root: &Path) -> Result<()> {
    match args.suite {
        Suite::Metrics => metrics(&args, root),
        Suite::Backbone => crate::bench_backbone::run(
            &args.python,
            args.quick,
            &json_path(&args, root, "backbone"),
            root,
        ),
        Suite::Ops => crate::bench_ops::run(
            &args.python,
            args.quick,
            &json_path(&args, root, "ops"),
            root,
        ),
        Suite::Isl => crate::bench_isl::run(args.quick, &json_path(&args, root, "isl")),
        Suite::Art => crate::bench_art::run(args.quick, &json_path(&args, root, "art")),
        Suite::Data => crate::bench_data::run(
            &args.python,
            args.quick,
            &json_path(&args, root, "data"),
            root,
        ),
    }
}

fn json_path(args: &BenchArgs, root: &Path, suite: &str) -> PathBuf {
    root.join(
        args.json
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("target/bench/{suite}.json"))),
    )
}

/// The metrics suite's shared state: the arguments, the reference script, a scratch directory
/// for the `.npy` files both sides read, and the thread count.
struct MetricsBench<'a> {
    args: &'a BenchArgs,
    script: PathBuf,
    work: PathBuf,
    w: String,
    threads: usize,
}

impl MetricsBench<'_> {
    /// Exhaustive exact top-k over 64-bit codes (one query at a time, batched on one thread,
    /// batched on every thread) against FAISS `IndexBinaryFlat`; three rows.
    fn topk(&self) -> Result<Vec<Value>> {
        let mut rows = Vec::new();
        let (n_db, n_q, k) = if self.args.quick {
            (200_000, 200, 100)
        } else {
            (1_000_000, 1_000, 100)
        };
        let mut rng = Rng(0x5EED_1234_ABCD_0001);
        let db_bytes: Vec<u8> = (0..n_db * 8).map(|_| rng.next() as u8).collect();
        let q_bytes: Vec<u8> = (0..n_q * 8).map(|_| rng.next() as u8).collect();
        write_npy(self.work.join("topk_db.npy"), &[n_db, 8], &db_bytes)?;
        write_npy(self.work.join("topk_q.npy"), &[n_q, 8], &q_bytes)?;
        let index = HammingIndex::new(PackedCodes::from_packbits(&db_bytes, n_db, 64)?)?;
        let queries = PackedCodes::from_packbits(&q_bytes, n_q, 64)?;
        eprintln!("top-k: {n_q} queries × {n_db} codes, k = {k} ...");
        let (t_single, single) = best_of(3, || {
            (0..n_q)
                .map(|i| index.search(queries.code(i), k))
                .collect::<Result<Vec<_>, _>>()
        });
        let single = single?;
        let (t_batch1, _) = best_of(3, || single_thread(|| index.search_batch(&queries, k)));
        let (t_batch, batch) = best_of(3, || index.search_batch(&queries, k));
        ensure!(
            batch? == single,
            "batched search disagrees with single-query search"
        );
        // relata's FAISS export of the database, for the reference to load and check.
        std::fs::write(
            self.work.join("relata.faiss"),
            crate::export::faiss_binary_flat(index.codes()),
        )?;
        let faiss = python(
            &self.args.python,
            &self.script,
            &["faiss-topk", &self.w, &k.to_string()],
            NUMPY_FAISS,
        )?;
        ensure!(
            faiss["relata_export_matches"] == serde_json::Value::Bool(true),
            "FAISS ranked relata's exported index differently from its own: {faiss}"
        );
        let faiss_s = faiss["seconds"].as_f64().context("faiss seconds")?;
        let faiss_dist = NpyArray::read(self.work.join("faiss_dist.npy"))?.to_i64()?;
        let ours: Vec<i64> = single
            .iter()
            .flat_map(|r| r.distances.iter().map(|&d| d as i64))
            .collect();
        ensure!(ours == faiss_dist, "top-k distances differ from FAISS");
        let per_q = |s: f64| 1e3 * s / n_q as f64;
        let per_code = |s: f64| 1e9 * s / (n_q as f64 * n_db as f64);
        rows.push(json!({
            "case": format!("Hamming top-{k}, 64-bit, {n_db} codes, 1 thread"),
            "relata": format!("{:.3} ms/query ({:.2} ns/code)", per_q(t_single), per_code(t_single)),
            "reference": format!("FAISS IndexBinaryFlat {:.3} ms/query", per_q(faiss_s)),
            "speedup": faiss_s / t_single,
        }));
        rows.push(json!({
            "case": format!("Hamming top-{k}, batched (groups of {}), 1 thread", relata_metrics::index::QUERY_GROUP),
            "relata": format!("{:.3} ms/query ({:.3} ns/code)", per_q(t_batch1), per_code(t_batch1)),
            "reference": format!("FAISS IndexBinaryFlat {:.3} ms/query", per_q(faiss_s)),
            "speedup": faiss_s / t_batch1,
        }));
        rows.push(json!({
            "case": format!("Hamming top-{k}, batched, {} threads", self.threads),
            "relata": format!("{:.3} ms/query ({:.3} ns/code)", per_q(t_batch), per_code(t_batch)),
            "reference": format!("FAISS IndexBinaryFlat 1 thread {:.3} ms/query", per_q(faiss_s)),
            "speedup": faiss_s / t_batch,
        }));

        Ok(rows)
    }

    /// mAP@all of `nq` queries against `nd` codes of `bits` bits in `classes` classes, against
    /// the per-query vectorised numpy protocol (timed on `ref_q` queries and scaled).
    fn map_case(
        &self,
        name: &str,
        nq: usize,
        nd: usize,
        classes: usize,
        bits: usize,
        ref_q: usize,
    ) -> Result<Value> {
        let mut rng = Rng(0xC0DE ^ (bits as u64) << 8 ^ nq as u64);
        let centers: Vec<u8> = (0..classes * bits)
            .map(|_| (rng.next() & 1) as u8)
            .collect();
        let mut make = |n: usize| {
            let labels: Vec<i64> = (0..n).map(|_| rng.below(classes as u64) as i64).collect();
            let codes: Vec<i8> = labels
                .iter()
                .flat_map(|&c| (0..bits).map(move |j| (c as usize, j)))
                .map(|(c, j)| {
                    let b = centers[c * bits + j] ^ (rng.below(4) == 0) as u8;
                    if b == 1 { 1i8 } else { -1 }
                })
                .collect();
            (codes, labels)
        };
        let (qc, ql) = make(nq);
        let (dc, dl) = make(nd);
        write_npy(self.work.join("map_q.npy"), &[nq, bits], &qc)?;
        write_npy(self.work.join("map_d.npy"), &[nd, bits], &dc)?;
        write_npy(self.work.join("map_ql.npy"), &[nq], &ql)?;
        write_npy(self.work.join("map_dl.npy"), &[nd], &dl)?;
        let q = PackedCodes::from_values(&qc, bits)?;
        let d = PackedCodes::from_values(&dc, bits)?;
        let (ql, dl) = (Labels::single(ql), Labels::single(dl));
        let cfg = HashingEvalConfig::default();
        eprintln!("mAP@all {name}: {nq} × {nd}, {bits} bits ...");
        let (t_ours, m) = best_of(if nq > 50_000 { 1 } else { 3 }, || {
            evaluate_hashing(&q, &d, &ql, &dl, &cfg)
        });
        let m = m?;
        let (t_ours1, _) = best_of(1, || {
            single_thread(|| evaluate_hashing(&q, &d, &ql, &dl, &cfg))
        });
        let sub = ref_q.min(nq);
        let reference = python(
            &self.args.python,
            &self.script,
            &["numpy-map", &self.w, &sub.to_string()],
            NUMPY_FAISS,
        )?;
        let ref_s =
            reference["seconds"].as_f64().context("numpy seconds")? * nq as f64 / sub as f64;
        // Cross-check on the reference's query subset.
        let qs = PackedCodes::from_words(bits, q.as_words()[..sub * q.words_per_code()].to_vec())?;
        let Labels::Single(all) = &ql else {
            unreachable!()
        };
        let ms = evaluate_hashing(&qs, &d, &Labels::single(all[..sub].to_vec()), &dl, &cfg)?;
        let ref_map = reference["map"].as_f64().context("numpy map")?;
        ensure!(
            (ms.map - ref_map).abs() < 1e-9,
            "{name}: mAP {} vs numpy {ref_map}",
            ms.map
        );
        let scaled = if sub < nq {
            format!(
                " (timed on {sub} queries, scaled ×{:.1})",
                nq as f64 / sub as f64
            )
        } else {
            String::new()
        };
        Ok(json!({
            "case": format!("mAP@all {name} ({nq} × {nd}, {bits} bits)"),
            "relata": format!("{:.4} s ({} threads), {:.4} s (1 thread); mAP {:.4}", t_ours, self.threads, t_ours1, m.map),
            "reference": format!("numpy {:.2} s{scaled}", ref_s),
            "speedup": ref_s / t_ours,
        }))
    }

    /// Image–text R@K on COCO-5K-sized similarities against the VSE numpy evaluator.
    fn recall(&self) -> Result<Value> {
        let n_img = if self.args.quick { 1000 } else { 5000 };
        let mut rng = Rng(0xFEED_5000);
        let sims: Vec<f32> = (0..n_img * n_img * 5)
            .map(|i| {
                let (img, cap) = (i / (5 * n_img), i % (5 * n_img));
                let noise = (rng.next() >> 40) as f32 / (1u64 << 24) as f32;
                noise + if cap / 5 == img { 0.3 } else { 0.0 }
            })
            .collect();
        write_npy(
            self.work.join("recall_sims.npy"),
            &[n_img, 5 * n_img],
            &sims,
        )?;
        eprintln!("R@K: {n_img} × {} ...", 5 * n_img);
        let (t_ours, r) = best_of(3, || recall_at_k(&sims, n_img, 5));
        let r = r?;
        let reference = python(
            &self.args.python,
            &self.script,
            &["numpy-recall", &self.w],
            NUMPY_FAISS,
        )?;
        let ref_s = reference["seconds"].as_f64().context("numpy seconds")?;
        ensure!(
            (reference["i2t_r1"].as_f64().unwrap_or(-1.0) - r.i2t.r1).abs() < 1e-9
                && (reference["t2i_r1"].as_f64().unwrap_or(-1.0) - r.t2i.r1).abs() < 1e-9,
            "R@1 differs from numpy: {reference} vs {r:?}"
        );
        Ok(json!({
            "case": format!("R@K, {n_img} images × {} captions", 5 * n_img),
            "relata": format!("{:.3} s ({} threads); rSum {:.1}", t_ours, self.threads, r.rsum),
            "reference": format!("numpy (VSE evaluator) {:.2} s", ref_s),
            "speedup": ref_s / t_ours,
        }))
    }
}

fn metrics(args: &BenchArgs, root: &Path) -> Result<()> {
    let work = std::env::temp_dir().join(format!("relata-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let bench = MetricsBench {
        args,
        script: root.join("benches/python/metrics_reference.py"),
        w: work.to_str().context("temp dir is not UTF-8")?.to_string(),
        work,
        threads: rayon::current_num_threads(),
    };
    let kernel = relata_metrics::hamming::kernel();
    eprintln!(
        "popcount kernel: {} ({} rayon threads)",
        kernel.name(),
        bench.threads
    );
    let mut rows = bench.topk()?;
    let cub_ref = if args.quick { 300 } else { 5794 };
    for bits in [12, 32, 48] {
        rows.push(bench.map_case("CUB", 5794, 5994, 200, bits, cub_ref)?);
    }
    rows.push(if args.quick {
        bench.map_case("VegFru/10", 11_693, 29_200, 292, 48, 200)?
    } else {
        bench.map_case("VegFru", 116_931, 29_200, 292, 48, 1000)?
    });
    rows.push(bench.recall()?);

    let _ = std::fs::remove_dir_all(&bench.work);
    println!("| case | relata | reference | speed-up |\n| --- | --- | --- | --- |");
    for row in &rows {
        println!(
            "| {} | {} | {} | {:.1}× |",
            row["case"].as_str().unwrap_or(""),
            row["relata"].as_str().unwrap_or(""),
            row["reference"].as_str().unwrap_or(""),
            row["speedup"].as_f64().unwrap_or(0.0)
        );
    }
    let out = json_path(args, root, "metrics");
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        &out,
        serde_json::to_string_pretty(&json!({
            "suite": "metrics",
            "quick": args.quick,
            "kernel": kernel.name(),
            "threads": bench.threads,
            "rows": rows,
        }))?,
    )?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failing reference names its script, its stderr and the packages that suite needs.
    #[test]
    fn a_failing_reference_says_what_to_install() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("reference.py");
        std::fs::write(
            &script,
            "import sys\nsys.exit('No module named torchvision')\n",
        )
        .unwrap();
        let err = python("python3", &script, &["x"], "torch torchvision")
            .unwrap_err()
            .to_string();
        assert!(err.contains("reference.py x failed"), "{err}");
        assert!(err.contains("No module named torchvision"), "{err}");
        assert!(
            err.contains("python3 -m pip install torch torchvision"),
            "{err}"
        );
        assert!(!err.contains("faiss"), "{err}");
    }
}
