//! Class labels and the relevance rule of retrieval metrics.
//!
//! Single-label data: a database item is relevant to a query when both have the same class.
//! Multi-label data (multi-hot rows): relevant when they share at least one label. Multi-hot
//! rows are stored as bitsets, so the test is an AND of a few words.

use crate::error::{Result, invalid, shape};

/// Labels of a set of items.
#[derive(Debug, Clone, PartialEq)]
pub enum Labels {
    /// One class id per item.
    Single(Vec<i64>),
    /// A multi-hot row per item, packed into `words` `u64` words.
    Multi {
        /// Number of label columns.
        classes: usize,
        /// Words per item.
        words: usize,
        /// Row-major packed bits.
        bits: Vec<u64>,
    },
}

impl Labels {
    /// One class id per item.
    pub fn single(ids: Vec<i64>) -> Self {
        Labels::Single(ids)
    }

    /// A row-major `n × classes` multi-hot matrix (value > 0 means the label is present).
    pub fn multi_hot<T: Copy + Into<f64>>(values: &[T], classes: usize) -> Result<Self> {
        if classes == 0 || !values.len().is_multiple_of(classes) {
            return Err(shape(format!(
                "multi-hot matrix of {} values is not n × {classes}",
                values.len()
            )));
        }
        let words = classes.div_ceil(64);
        let n = values.len() / classes;
        let mut bits = vec![0u64; n * words];
        for (row, out) in values
            .chunks_exact(classes)
            .zip(bits.chunks_exact_mut(words))
        {
            for (j, &v) in row.iter().enumerate() {
                let v: f64 = v.into();
                if v.is_nan() {
                    return Err(invalid("multi-hot label is NaN"));
                }
                if v > 0.0 {
                    out[j / 64] |= 1 << (j % 64);
                }
            }
        }
        Ok(Labels::Multi {
            classes,
            words,
            bits,
        })
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        match self {
            Labels::Single(v) => v.len(),
            Labels::Multi { words, bits, .. } => bits.len() / words,
        }
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks that query and database labels are of the same kind and width.
    pub(crate) fn check_compatible(&self, db: &Labels) -> Result<()> {
        match (self, db) {
            (Labels::Single(_), Labels::Single(_)) => Ok(()),
            (Labels::Multi { classes: a, .. }, Labels::Multi { classes: b, .. }) if a == b => {
                Ok(())
            }
            (Labels::Multi { classes: a, .. }, Labels::Multi { classes: b, .. }) => Err(shape(
                format!("query labels have {a} columns but database labels have {b}"),
            )),
            _ => Err(shape(
                "query and database labels must both be class ids or both be multi-hot",
            )),
        }
    }

    /// A relevance test for query `qi` against database items of `db`.
    pub(crate) fn relevance<'a>(&'a self, qi: usize, db: &'a Labels) -> Relevance<'a> {
        match (self, db) {
            (Labels::Single(q), Labels::Single(d)) => Relevance::Single {
                class: q[qi],
                db: d,
            },
            (Labels::Multi { words, bits, .. }, Labels::Multi { bits: d, .. }) => {
                Relevance::Multi {
                    query: &bits[qi * words..(qi + 1) * words],
                    db: d,
                }
            }
            _ => unreachable!("check_compatible guards mixed label kinds"),
        }
    }
}

/// Relevance of database items to one query.
pub(crate) enum Relevance<'a> {
    Single { class: i64, db: &'a [i64] },
    Multi { query: &'a [u64], db: &'a [u64] },
}

impl Relevance<'_> {
    #[inline(always)]
    pub(crate) fn is_relevant(&self, i: usize) -> bool {
        match self {
            Relevance::Single { class, db } => db[i] == *class,
            Relevance::Multi { query, db } => {
                let w = query.len();
                let row = &db[i * w..(i + 1) * w];
                query.iter().zip(row).any(|(a, b)| a & b != 0)
            }
        }
    }
}
