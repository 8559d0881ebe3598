//! Evaluation (the paper's "Evaluation"; docs/csrms.md): top-1 and top-5 accuracy over the whole
//! test set — a global count, not the released code's mean of per-batch accuracies — for the
//! backbone's linear classifier (the head the CE baseline also has) and for the GCN branch, each
//! image wired to copies of itself and smoothed with the prototypes expected under the linear
//! head's softmax ([`CsrmsModel::classify_gcn`]). A preset's `reported_head` says which of the two
//! its table compares with the baseline; both are always reported.

use burn::tensor::Device;
use relata_dataset::{BatchLoader, Pipeline, Sample};
use relata_metrics::topk_accuracy;
use serde::{Deserialize, Serialize};

use crate::error::CsrmsError;
use crate::model::CsrmsModel;

/// Accuracies in percent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CsrmsEval {
    /// Backbone classifier, top-1.
    pub top1: f64,
    /// Backbone classifier, top-5.
    pub top5: f64,
    /// GCN branch (self-copies as positives, expected prototypes), top-1.
    pub gcn_top1: f64,
    /// GCN branch, top-5.
    pub gcn_top5: f64,
}

/// Both heads' class scores for `samples`, row-major `n × classes` each.
pub fn class_scores(
    model: &CsrmsModel,
    samples: &[Sample],
    pipeline: &Pipeline,
    batch_size: usize,
    device: &Device,
) -> Result<(Vec<f32>, Vec<f32>), CsrmsError> {
    let loader = BatchLoader::new(samples, pipeline.clone(), 0)?;
    let indices: Vec<usize> = (0..samples.len()).collect();
    let (mut linear, mut gcn) = (Vec::new(), Vec::new());
    let read = |t: burn::tensor::Tensor<2>| {
        t.into_data()
            .try_into_vec_as::<f32>()
            .map_err(|e| CsrmsError::Input(format!("reading class scores: {e:?}")))
    };
    for chunk in indices.chunks(batch_size.max(1)) {
        let batch = loader.load(chunk, 0, device)?;
        let features = model.features(batch.images);
        linear.extend(read(model.classifier.forward(features.clone()))?);
        gcn.extend(read(model.classify_gcn(features))?);
    }
    Ok((linear, gcn))
}

/// Top-1/top-5 of both heads on `test` (`model` in inference mode, on `device`).
pub fn evaluate(
    model: &CsrmsModel,
    test: &[Sample],
    pipeline: &Pipeline,
    classes: usize,
    device: &Device,
) -> Result<CsrmsEval, CsrmsError> {
    if test.is_empty() {
        return Err(CsrmsError::Input("the test split is empty".into()));
    }
    let (linear, gcn) = class_scores(model, test, pipeline, 128, device)?;
    let labels: Vec<i64> = test.iter().map(|s| s.label as i64).collect();
    Ok(CsrmsEval {
        top1: topk_accuracy(&linear, classes, &labels, 1)?,
        top5: topk_accuracy(&linear, classes, &labels, 5)?,
        gcn_top1: topk_accuracy(&gcn, classes, &labels, 1)?,
        gcn_top5: topk_accuracy(&gcn, classes, &labels, 5)?,
    })
}
