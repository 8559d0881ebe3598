//! relata-metrics: the retrieval and clustering metrics of relata's four methods, in pure Rust.
//!
//! - Hash codes packed into `u64` words ([`PackedCodes`]), Hamming distance by popcount with
//!   the instruction set chosen at run time ([`hamming`]), full rankings by counting sort
//!   ([`ranking`]), mAP@all / mAP@k / P@k / R@k / P@radius / PR curves ([`hashing`]) and an
//!   exhaustive exact top-k [`HammingIndex`] that saves and loads with a checksum.
//! - Image–text R@K, median/mean rank, rSum and the COCO 5-fold 1K protocol ([`recall`]).
//! - Weighted kNN (ISL) ([`knn`]), clustering ACC/NMI/ARI ([`cluster`]) and top-k
//!   classification accuracy ([`classify`]).
//! - `.npy` reading and the `cargo xtask eval` JSON contract (docs/design.md, Evaluation contract) ([`eval`]).
//!
//! Units follow the papers: mAP, ACC, NMI, ARI are fractions; recalls, rSum and kNN/top-k
//! accuracies are percentages. Ties always rank by index.

pub mod classify;
pub mod cluster;
pub mod codes;
pub mod error;
pub mod eval;
pub mod hamming;
pub mod hashing;
pub mod index;
pub mod kmeans;
pub mod knn;
pub mod labels;
pub mod npy;
pub mod ranking;
pub mod recall;

pub use classify::topk_accuracy;
pub use cluster::{ClusterReport, cluster_scores};
pub use codes::PackedCodes;
pub use error::{MetricsError, Result};
pub use hashing::{
    HashingEvalConfig, HashingMetrics, TopKMode, evaluate_hashing, mean_average_precision,
};
pub use index::{HammingIndex, Neighbours};
pub use kmeans::{KMeansConfig, KMeansResult, kmeans};
pub use knn::{Features, KnnConfig, KnnReport, knn_classify};
pub use labels::Labels;
pub use ranking::{hamming_rank, hamming_rank_into};
pub use recall::{RecallReport, recall_at_k, recall_at_k_folds};
