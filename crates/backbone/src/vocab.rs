//! A word vocabulary built from training captions (the BiGRU text encoder's input), VSE-style:
//! lower-cased word tokens, `<pad>`=0, `<start>`=1, `<end>`=2, `<unk>`=3, then words seen at
//! least `min_count` times in order of first appearance (so the ids are reproducible).

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::BackboneError;

/// Special tokens, in id order.
pub const SPECIALS: [&str; 4] = ["<pad>", "<start>", "<end>", "<unk>"];
/// Id of `<unk>`.
pub const UNK: usize = 3;

/// Splits a caption into lower-case word tokens (letters/digits/apostrophes; punctuation is a
/// token of its own).
pub fn tokenize(caption: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for ch in caption.chars().flat_map(char::to_lowercase) {
        if ch.is_alphanumeric() || ch == '\'' {
            word.push(ch);
        } else {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            if !ch.is_whitespace() {
                out.push(ch.to_string());
            }
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// The vocabulary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vocab {
    words: Vec<String>,
    #[serde(skip)]
    index: HashMap<String, usize>,
}

impl Vocab {
    /// Builds it from training captions.
    pub fn build<'a>(captions: impl IntoIterator<Item = &'a str>, min_count: usize) -> Self {
        let mut counts: HashMap<String, usize> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        for c in captions {
            for t in tokenize(c) {
                let n = counts.entry(t.clone()).or_insert(0);
                if *n == 0 {
                    order.push(t);
                }
                *n += 1;
            }
        }
        let mut words: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
        words.extend(order.into_iter().filter(|w| counts[w] >= min_count.max(1)));
        Self::from_words(words)
    }

    fn from_words(words: Vec<String>) -> Self {
        let index = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i))
            .collect();
        Self { words, index }
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether only the special tokens are there.
    pub fn is_empty(&self) -> bool {
        self.words.len() <= SPECIALS.len()
    }

    /// `<start> w₁ … wₙ <end>` as ids (unknown words → `<unk>`).
    pub fn encode(&self, caption: &str) -> Vec<usize> {
        let mut ids = vec![1];
        ids.extend(
            tokenize(caption)
                .iter()
                .map(|t| self.index.get(t).copied().unwrap_or(UNK)),
        );
        ids.push(2);
        ids
    }

    /// The word of an id.
    pub fn word(&self, id: usize) -> Option<&str> {
        self.words.get(id).map(String::as_str)
    }

    /// Saves as JSON.
    pub fn save(&self, path: &Path) -> Result<(), BackboneError> {
        let json = serde_json::to_vec(&self.words).expect("words serialise");
        std::fs::write(path, json).map_err(|e| BackboneError::Io {
            path: path.to_path_buf(),
            source: e,
        })
    }

    /// Loads a vocabulary saved with [`Vocab::save`].
    pub fn load(path: &Path) -> Result<Self, BackboneError> {
        let bytes = std::fs::read(path).map_err(|e| BackboneError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let words: Vec<String> =
            serde_json::from_slice(&bytes).map_err(|e| BackboneError::Read {
                path: path.to_path_buf(),
                reason: format!("not a vocabulary JSON list ({e})"),
            })?;
        if words.len() < SPECIALS.len() || words[..4] != SPECIALS {
            return Err(BackboneError::Read {
                path: path.to_path_buf(),
                reason: format!("the first four words must be {SPECIALS:?}"),
            });
        }
        Ok(Self::from_words(words))
    }
}

/// Pads id sequences into a `[b, max_len]` matrix (row-major, `<pad>` = 0) plus lengths.
pub fn pad_batch(seqs: &[Vec<usize>]) -> (Vec<i64>, [usize; 2], Vec<usize>) {
    let l = seqs.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = vec![0i64; seqs.len() * l];
    for (i, s) in seqs.iter().enumerate() {
        for (j, &t) in s.iter().enumerate() {
            ids[i * l + j] = t as i64;
        }
    }
    (ids, [seqs.len(), l], seqs.iter().map(Vec::len).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_encode_roundtrip() {
        let caps = ["A red cube, left of a ball.", "a Blue ball", "a red cone"];
        let v = Vocab::build(caps.iter().copied(), 1);
        assert_eq!(v.word(4), Some("a"));
        assert_eq!(
            tokenize("A red cube, left."),
            vec!["a", "red", "cube", ",", "left", "."]
        );
        let ids = v.encode("a red pyramid");
        assert_eq!(ids[0], 1);
        assert_eq!(*ids.last().unwrap(), 2);
        assert_eq!(ids[3], UNK);
        let v2 = Vocab::build(caps.iter().copied(), 2);
        assert!(v2.len() < v.len() && v2.encode("cube")[1] == UNK);
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("vocab.json");
        v.save(&p).unwrap();
        assert_eq!(Vocab::load(&p).unwrap(), v);
        let (ids, shape, lens) = pad_batch(&[vec![1, 5, 2], vec![1, 2]]);
        assert_eq!((shape, lens), ([2, 3], vec![3, 2]));
        assert_eq!(ids, vec![1, 5, 2, 1, 2, 0]);
    }
}
