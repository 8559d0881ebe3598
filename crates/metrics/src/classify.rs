//! Top-k classification accuracy from class scores (CSRMS top-1/top-5).
//!
//! A sample counts for top-k when its true class is among the k highest scores; ties rank by
//! class id (lower first). Results are percentages.

use crate::error::{Result, invalid, shape};

/// Top-k accuracy (percent) of row-major `n × classes` scores against `labels`.
pub fn topk_accuracy(scores: &[f32], classes: usize, labels: &[i64], k: usize) -> Result<f64> {
    if classes == 0 || scores.len() != labels.len() * classes {
        return Err(shape(format!(
            "scores have {} values, expected {} samples × {classes} classes",
            scores.len(),
            labels.len()
        )));
    }
    if k == 0 {
        return Err(invalid("top-k accuracy needs k ≥ 1"));
    }
    let mut correct = 0usize;
    for (row, &label) in scores.chunks_exact(classes).zip(labels) {
        if label < 0 || label as usize >= classes {
            return Err(invalid(format!("label {label} is outside 0..{classes}")));
        }
        let t = label as usize;
        let target = row[t];
        if target.is_nan() {
            return Err(invalid("scores contain NaN"));
        }
        let above = row
            .iter()
            .enumerate()
            .filter(|&(c, &v)| v > target || (v == target && c < t))
            .count();
        correct += (above < k) as usize;
    }
    Ok(100.0 * correct as f64 / labels.len().max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_rank_by_class_id() {
        let scores = [0.1f32, 0.7, 0.2, 0.5, 0.5, 0.0];
        assert_eq!(topk_accuracy(&scores, 3, &[1, 0], 1).unwrap(), 100.0);
        assert_eq!(topk_accuracy(&scores, 3, &[2, 1], 1).unwrap(), 0.0);
        assert_eq!(topk_accuracy(&scores, 3, &[2, 1], 2).unwrap(), 100.0);
        assert!(topk_accuracy(&scores, 3, &[3, 1], 1).is_err());
        assert!(topk_accuracy(&scores, 4, &[0, 1], 1).is_err());
    }
}
