//! `cargo xtask eval map|recall|knn|cluster`: the stable evaluation contract (docs/design.md, Evaluation contract).
//! NumPy `.npy` files in, one JSON object on stdout. The work is `relata_metrics::eval`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Subcommand, ValueEnum};
use relata_metrics::eval::{MapArgs, eval_cluster, eval_knn, eval_map, eval_recall};
use relata_metrics::{KnnConfig, TopKMode};

#[derive(Subcommand, Debug)]
pub enum EvalCommand {
    /// Hashing retrieval mAP (mAP@all, or mAP@K with --topk) and friends.
    Map {
        /// Query codes: n × bits, ±1 or 0/1 (int8/float/...), or np.packbits uint8 bytes.
        #[arg(long)]
        query_codes: PathBuf,
        /// Database codes, same format.
        #[arg(long)]
        db_codes: PathBuf,
        /// Query labels: class ids (n) or multi-hot (n × c; relevant = share ≥ 1 label).
        #[arg(long)]
        query_labels: PathBuf,
        /// Database labels, same format.
        #[arg(long)]
        db_labels: PathBuf,
        /// Report mAP@K as "map" (the whole-ranking value stays in "map_all").
        #[arg(long)]
        topk: Option<usize>,
        /// mAP@K convention: the first K positions, or the first K relevant hits.
        #[arg(long, value_enum, default_value_t = Mode::Positions)]
        topk_mode: Mode,
        /// Hamming radius for "precision_at_radius".
        #[arg(long, default_value_t = 2)]
        radius: u32,
        /// Add the precision–recall curve over all radii.
        #[arg(long)]
        pr_curve: bool,
        /// Read uint8 code files as np.packbits output of this many bits.
        #[arg(long)]
        packed_bits: Option<usize>,
    },
    /// Image–text R@1/5/10 both ways, medr, meanr, rSum.
    Recall {
        /// n_images × (captions_per_image · n_images) similarities; caption j is image j/5's.
        #[arg(long)]
        sims: PathBuf,
        /// Captions per image.
        #[arg(long, default_value_t = 5)]
        captions_per_image: usize,
        /// Average over this many consecutive folds (COCO 1K: --folds 5 on the 5K matrix).
        #[arg(long)]
        folds: Option<usize>,
    },
    /// Weighted kNN top-1/top-5 (ISL protocol).
    Knn {
        #[arg(long)]
        train_feats: PathBuf,
        #[arg(long)]
        train_labels: PathBuf,
        #[arg(long)]
        test_feats: PathBuf,
        #[arg(long)]
        test_labels: PathBuf,
        /// Neighbours.
        #[arg(long, default_value_t = 200)]
        k: usize,
        /// Vote temperature: weight = exp(sim / tau).
        #[arg(long, default_value_t = 0.1)]
        tau: f64,
    },
    /// Clustering ACC (Hungarian), NMI (arithmetic), ARI.
    Cluster {
        #[arg(long)]
        labels_true: PathBuf,
        #[arg(long)]
        labels_pred: PathBuf,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Mode {
    Positions,
    RelevantHits,
}

pub fn run(cmd: EvalCommand) -> Result<()> {
    let value = match cmd {
        EvalCommand::Map {
            query_codes,
            db_codes,
            query_labels,
            db_labels,
            topk,
            topk_mode,
            radius,
            pr_curve,
            packed_bits,
        } => eval_map(&MapArgs {
            query_codes,
            db_codes,
            query_labels,
            db_labels,
            topk,
            topk_mode: match topk_mode {
                Mode::Positions => TopKMode::Positions,
                Mode::RelevantHits => TopKMode::RelevantHits,
            },
            radius,
            pr_curve,
            packed_bits,
        })?,
        EvalCommand::Recall {
            sims,
            captions_per_image,
            folds,
        } => eval_recall(&sims, captions_per_image, folds)?,
        EvalCommand::Knn {
            train_feats,
            train_labels,
            test_feats,
            test_labels,
            k,
            tau,
        } => eval_knn(
            &train_feats,
            &train_labels,
            &test_feats,
            &test_labels,
            KnnConfig { k, tau },
        )?,
        EvalCommand::Cluster {
            labels_true,
            labels_pred,
        } => eval_cluster(&labels_true, &labels_pred)?,
    };
    println!("{}", serde_json::to_string(&value)?);
    Ok(())
}
