//! The evaluation contract (docs/design.md, Evaluation contract): `.npy` files in, one JSON object out.
//!
//! `cargo xtask eval <metric>` is a thin wrapper over these functions, so the contract is
//! tested here without spawning processes. Every input error names the offending file.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::cluster::cluster_scores;
use crate::codes::PackedCodes;
use crate::error::{MetricsError, Result};
use crate::hashing::{HashingEvalConfig, TopKMode, evaluate_hashing};
use crate::knn::{Features, KnnConfig, knn_classify};
use crate::labels::Labels;
use crate::npy::{NpyArray, NpyData};
use crate::recall::{recall_at_k, recall_at_k_folds};

fn bad(path: &str, reason: impl Into<String>) -> MetricsError {
    MetricsError::Corrupt {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// Arguments of `eval map`.
#[derive(Debug, Clone)]
pub struct MapArgs {
    /// Query codes: n × bits (±1 or 0/1, any numeric dtype), or packed `uint8` bytes.
    pub query_codes: PathBuf,
    /// Database codes, same format.
    pub db_codes: PathBuf,
    /// Query labels: class ids (n or n × 1) or a multi-hot matrix (n × c).
    pub query_labels: PathBuf,
    /// Database labels, same format.
    pub db_labels: PathBuf,
    /// mAP@k: "map" is then mAP@k and "map_all" the whole-ranking value.
    pub topk: Option<usize>,
    /// Truncation rule for mAP@k.
    pub topk_mode: TopKMode,
    /// Radius for precision within Hamming radius.
    pub radius: u32,
    /// Emit the PR curve.
    pub pr_curve: bool,
    /// Treat `uint8` code files as `np.packbits` output of this many bits (otherwise a `uint8`
    /// file holding any value above 1 is taken as packed with 8 × columns bits).
    pub packed_bits: Option<usize>,
}

/// Loads a code file (see [`MapArgs`]).
pub fn read_codes(path: &PathBuf, packed_bits: Option<usize>) -> Result<PackedCodes> {
    let a = NpyArray::read(path)?;
    let p = a.path.clone();
    let (n, cols) = a.matrix_shape()?;
    if a.shape.len() != 2 {
        return Err(bad(
            &p,
            format!(
                "codes must be a 2-D n × bits array, got shape {:?}",
                a.shape
            ),
        ));
    }
    let wrap = |e: MetricsError| bad(&p, e.to_string());
    if let NpyData::U8(bytes) = &a.data {
        let packed = packed_bits.is_some() || bytes.iter().any(|&b| b > 1);
        if packed {
            let bits = packed_bits.unwrap_or(cols * 8);
            if bits.div_ceil(8) != cols {
                return Err(bad(
                    &p,
                    format!(
                        "{bits}-bit packed codes need {} bytes per row, file has {cols}",
                        bits.div_ceil(8)
                    ),
                ));
            }
            return PackedCodes::from_packbits(bytes, n, bits).map_err(wrap);
        }
    }
    let values = a.to_f32();
    if let Some(v) = values
        .iter()
        .find(|v| !(**v == 1.0 || **v == -1.0 || **v == 0.0))
    {
        return Err(bad(
            &p,
            format!("code values must be ±1 or 0/1 (or packed uint8), found {v}"),
        ));
    }
    PackedCodes::from_values(&values, cols).map_err(wrap)
}

/// Loads a label file: class ids, or a multi-hot matrix when 2-D with more than one column.
pub fn read_labels(path: &PathBuf) -> Result<Labels> {
    let a = NpyArray::read(path)?;
    let (_, cols) = a.matrix_shape()?;
    if cols > 1 {
        let v = a.to_f32();
        Labels::multi_hot(&v, cols).map_err(|e| bad(&a.path, e.to_string()))
    } else {
        Ok(Labels::single(a.to_i64()?))
    }
}

fn same_len(what: &str, a: (&PathBuf, usize), b: (&PathBuf, usize)) -> Result<()> {
    if a.1 != b.1 {
        return Err(bad(
            &b.0.display().to_string(),
            format!(
                "has {} {what} but {} has {}; they must describe the same items",
                b.1,
                a.0.display(),
                a.1
            ),
        ));
    }
    Ok(())
}

/// `eval map`.
pub fn eval_map(args: &MapArgs) -> Result<Value> {
    let q = read_codes(&args.query_codes, args.packed_bits)?;
    let d = read_codes(&args.db_codes, args.packed_bits)?;
    if q.bits() != d.bits() {
        return Err(bad(
            &args.db_codes.display().to_string(),
            format!(
                "holds {}-bit codes but {} holds {}-bit codes",
                d.bits(),
                args.query_codes.display(),
                q.bits()
            ),
        ));
    }
    let ql = read_labels(&args.query_labels)?;
    let dl = read_labels(&args.db_labels)?;
    same_len(
        "rows",
        (&args.query_codes, q.len()),
        (&args.query_labels, ql.len()),
    )?;
    same_len(
        "rows",
        (&args.db_codes, d.len()),
        (&args.db_labels, dl.len()),
    )?;
    ql.check_compatible(&dl)
        .map_err(|e| bad(&args.db_labels.display().to_string(), e.to_string()))?;
    let m = evaluate_hashing(
        &q,
        &d,
        &ql,
        &dl,
        &HashingEvalConfig {
            topk: args.topk,
            topk_mode: args.topk_mode,
            radius: args.radius,
            pr_curve: args.pr_curve,
        },
    )?;
    let mut out = json!({
        "map": m.map_at_k.unwrap_or(m.map),
        "map_all": m.map,
        "bits": q.bits(),
        "queries": m.queries,
        "database": d.len(),
        "no_relevant": m.no_relevant,
        "precision_at_radius": m.precision_at_radius,
        "radius": m.radius,
    });
    if let Some(k) = m.topk {
        out["topk"] = json!(k);
        out["topk_mode"] = json!(m.topk_mode);
        out["precision_at_k"] = json!(m.precision_at_k);
        out["recall_at_k"] = json!(m.recall_at_k);
    }
    if let Some(pr) = m.pr_curve {
        out["pr_curve"] = json!(pr);
    }
    Ok(out)
}

/// `eval recall`: `sims` is n_images × (per · n_images); `folds` = Some(5) for COCO 1K.
pub fn eval_recall(sims: &PathBuf, per: usize, folds: Option<usize>) -> Result<Value> {
    let a = NpyArray::read(sims)?;
    let p = a.path.clone();
    let (n, cols) = a.matrix_shape()?;
    if a.shape.len() != 2 || per == 0 || cols != n * per {
        return Err(bad(
            &p,
            format!(
                "similarities must be n_images × {per}·n_images (caption j belongs to image \
                 j/{per}), got shape {:?}",
                a.shape
            ),
        ));
    }
    let values = match a.data {
        NpyData::F32(v) => v,
        _ => a.to_f32(),
    };
    let r = match folds {
        Some(f) => recall_at_k_folds(&values, n, per, f),
        None => recall_at_k(&values, n, per),
    }
    .map_err(|e| bad(&p, e.to_string()))?;
    Ok(json!({"i2t": r.i2t, "t2i": r.t2i, "rsum": r.rsum}))
}

fn read_features(path: &PathBuf) -> Result<(Vec<f32>, usize)> {
    let a = NpyArray::read(path)?;
    if a.shape.len() != 2 {
        return Err(bad(
            &a.path,
            format!("features must be 2-D n × d, got shape {:?}", a.shape),
        ));
    }
    let dim = a.shape[1];
    Ok((a.to_f32(), dim))
}

/// `eval knn`.
pub fn eval_knn(
    train_feats: &PathBuf,
    train_labels: &PathBuf,
    test_feats: &PathBuf,
    test_labels: &PathBuf,
    config: KnnConfig,
) -> Result<Value> {
    let (tr, d1) = read_features(train_feats)?;
    let (te, d2) = read_features(test_feats)?;
    if d1 != d2 {
        return Err(bad(
            &test_feats.display().to_string(),
            format!("has dimension {d2} but {} has {d1}", train_feats.display()),
        ));
    }
    let trl = NpyArray::read(train_labels)?.to_i64()?;
    let tel = NpyArray::read(test_labels)?.to_i64()?;
    same_len(
        "rows",
        (train_feats, tr.len() / d1.max(1)),
        (train_labels, trl.len()),
    )?;
    same_len(
        "rows",
        (test_feats, te.len() / d2.max(1)),
        (test_labels, tel.len()),
    )?;
    let r = knn_classify(
        Features { data: &tr, dim: d1 },
        &trl,
        Features { data: &te, dim: d2 },
        &tel,
        config,
    )?;
    Ok(json!({"top1": r.top1, "top5": r.top5, "k": config.k, "tau": config.tau}))
}

/// `eval cluster`.
pub fn eval_cluster(labels_true: &PathBuf, labels_pred: &PathBuf) -> Result<Value> {
    let t = NpyArray::read(labels_true)?.to_i64()?;
    let p = NpyArray::read(labels_pred)?.to_i64()?;
    same_len("labels", (labels_true, t.len()), (labels_pred, p.len()))?;
    let r = cluster_scores(&t, &p)?;
    Ok(json!({"acc": r.acc, "nmi": r.nmi, "ari": r.ari}))
}
