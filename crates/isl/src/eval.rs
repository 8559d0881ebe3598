//! Evaluation (the paper's "Evaluation"; docs/isl.md): weighted kNN (k = 200 by default, weights
//! exp(sim/τ)) with the training set re-encoded by the test transform, and k-means (k = #classes)
//! on the test features scored by ACC (Hungarian), NMI and ARI. Labels are used here only.

use burn::tensor::Device;
use relata_dataset::{BatchLoader, Pipeline, Sample};
use relata_metrics::{Features, KMeansConfig, KnnConfig, cluster_scores, kmeans, knn_classify};
use serde::{Deserialize, Serialize};

use crate::config::IslConfig;
use crate::error::IslError;
use crate::model::IslNet;

/// The five reported numbers (kNN in percent, clustering as fractions — docs/design.md, Evaluation contract).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IslEval {
    /// Weighted kNN top-1, %.
    pub knn_top1: f64,
    /// Weighted kNN top-5, %.
    pub knn_top5: f64,
    /// k-means accuracy.
    pub acc: f64,
    /// Normalised mutual information.
    pub nmi: f64,
    /// Adjusted Rand index.
    pub ari: f64,
}

/// L2-normalised embeddings of every sample (row-major `n × dim`), in order.
pub fn embed(
    net: &IslNet,
    samples: &[Sample],
    pipeline: &Pipeline,
    batch_size: usize,
    device: &Device,
) -> Result<Vec<f32>, IslError> {
    let loader = BatchLoader::new(samples, pipeline.clone(), 0)?;
    let indices: Vec<usize> = (0..samples.len()).collect();
    let mut out = Vec::new();
    for chunk in indices.chunks(batch_size.max(1)) {
        let batch = loader.load(chunk, 0, device)?;
        let f = net
            .forward(batch.images)
            .into_data()
            .try_into_vec_as::<f32>()
            .map_err(|e| IslError::Input(format!("reading features: {e:?}")))?;
        out.extend(f);
    }
    Ok(out)
}

/// kNN and clustering scores of `net` (inference mode, on `device`).
pub fn evaluate(
    net: &IslNet,
    train: &[Sample],
    test: &[Sample],
    pipeline: &Pipeline,
    config: &IslConfig,
    device: &Device,
) -> Result<IslEval, IslError> {
    let batch = config.batch_size.max(64);
    let train_f = embed(net, train, pipeline, batch, device)?;
    let test_f = embed(net, test, pipeline, batch, device)?;
    let labels = |s: &[Sample]| s.iter().map(|x| x.label as i64).collect::<Vec<_>>();
    let (train_l, test_l) = (labels(train), labels(test));
    let dim = config.dim;
    let knn = knn_classify(
        Features {
            data: &train_f,
            dim,
        },
        &train_l,
        Features { data: &test_f, dim },
        &test_l,
        KnnConfig {
            k: config.knn_k.min(train.len()),
            tau: config.temperature,
        },
    )?;
    let classes = {
        let mut l = test_l.clone();
        l.sort_unstable();
        l.dedup();
        l.len()
    };
    let clusters = kmeans(
        &test_f,
        dim,
        KMeansConfig {
            k: classes.min(test.len()).max(1),
            n_init: 5,
            max_iter: 300,
            seed: config.seed,
        },
    )?;
    let scores = cluster_scores(&test_l, &clusters.labels)?;
    Ok(IslEval {
        knn_top1: knn.top1,
        knn_top5: knn.top5,
        acc: scores.acc,
        nmi: scores.nmi,
        ari: scores.ari,
    })
}
