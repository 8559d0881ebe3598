//! Batches (the paper's "Data"; docs/hrem.md): a training item is a caption, its image is caption /
//! 5. Region features are zero-padded with lengths; captions are tokenised once (BiGRU vocabulary
//! or BERT word pieces) and, in training, augmented per word — with p = 0.2 a word is masked (50
//! %), replaced by a random token (10 %) or deleted (40 %), all its pieces together — and each
//! region is dropped with p = 0.2 (at least one stays).

use relata_backbone::vocab::{UNK, tokenize};
use relata_backbone::{BertTokenizer, Vocab};
use relata_dataset::PrecompSplit;
use relata_dataset::rng::SeededRng;

use crate::error::HremError;

/// A caption as token ids, each with the index of the word it belongs to (`None`: a special
/// token that augmentation never touches).
#[derive(Debug, Clone, PartialEq)]
pub struct Tokens {
    /// Ids.
    pub ids: Vec<i64>,
    /// Word index per id.
    pub words: Vec<Option<u32>>,
}

/// The caption tokeniser of a run.
pub enum TextTokenizer {
    /// The BiGRU's vocabulary (`<start>` … `<end>`).
    Vocab(Vocab),
    /// BERT word pieces (`[CLS]` … `[SEP]`).
    Bert(Box<BertTokenizer>),
}

impl TextTokenizer {
    /// Tokens of one caption.
    pub fn tokens(&self, caption: &str) -> Result<Tokens, HremError> {
        match self {
            TextTokenizer::Vocab(vocab) => {
                let ids: Vec<i64> = vocab
                    .encode(caption)
                    .into_iter()
                    .map(|i| i as i64)
                    .collect();
                let words = tokenize(caption).len();
                // <start> w₀ … w_{n−1} <end>.
                let mut w: Vec<Option<u32>> = vec![None];
                w.extend((0..words as u32).map(Some));
                w.push(None);
                Ok(Tokens { ids, words: w })
            }
            TextTokenizer::Bert(bert) => {
                let (ids, words) = bert.encode_words(caption)?;
                Ok(Tokens { ids, words })
            }
        }
    }

    /// The id augmentation masks with (`<unk>` / `[MASK]`).
    pub fn mask_id(&self) -> i64 {
        match self {
            TextTokenizer::Vocab(_) => UNK as i64,
            TextTokenizer::Bert(b) => b.token_id("[MASK]").unwrap_or(100),
        }
    }

    /// Vocabulary size (random replacements are drawn from it, past the special tokens).
    pub fn vocab_size(&self) -> usize {
        match self {
            TextTokenizer::Vocab(v) => v.len(),
            TextTokenizer::Bert(b) => b.vocab_size(),
        }
    }
}

/// Word-level augmentation of one caption (module comment); special tokens are kept, and a
/// caption never loses all its words.
pub fn augment_words(
    tokens: &Tokens,
    p: f64,
    mask_id: i64,
    vocab_size: usize,
    rng: &mut SeededRng,
) -> Vec<i64> {
    let words = tokens
        .words
        .iter()
        .flatten()
        .max()
        .map_or(0, |&w| w as usize + 1);
    // 0 keep, 1 mask, 2 random, 3 delete — one decision per word.
    let decisions: Vec<u8> = (0..words)
        .map(|_| {
            if !rng.bernoulli(p) {
                return 0;
            }
            let r = rng.next_f64();
            if r < 0.5 {
                1
            } else if r < 0.6 {
                2
            } else {
                3
            }
        })
        .collect();
    let first_real = 4.min(vocab_size.saturating_sub(1));
    let mut out = Vec::with_capacity(tokens.ids.len());
    for (&id, word) in tokens.ids.iter().zip(&tokens.words) {
        match word.map(|w| decisions[w as usize]) {
            None | Some(0) => out.push(id),
            Some(1) => out.push(mask_id),
            Some(2) => out.push((first_real + rng.below(vocab_size - first_real)) as i64),
            _ => {}
        }
    }
    let specials = tokens.words.iter().filter(|w| w.is_none()).count();
    if out.len() <= specials && words > 0 {
        return tokens.ids.clone();
    }
    out
}

/// Pads id rows into `[b, l]` (0 = padding) with their lengths.
pub fn pad_ids(rows: &[Vec<i64>]) -> (Vec<i64>, [usize; 2], Vec<usize>) {
    let l = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut ids = vec![0i64; rows.len() * l];
    for (i, r) in rows.iter().enumerate() {
        ids[i * l..i * l + r.len()].copy_from_slice(r);
    }
    (ids, [rows.len(), l], rows.iter().map(Vec::len).collect())
}

/// Zero-padded region features (`b · l · dim` values), their shape `[b, l, dim]` and each
/// image's number of regions.
pub type RegionBatch = (Vec<f32>, [usize; 3], Vec<usize>);

/// Regions of `images` as `[b, l, dim]` zero-padded, with lengths; with `drop` and an `rng`,
/// each region is dropped with that probability (at least one stays).
pub fn region_batch(
    split: &PrecompSplit,
    images: &[usize],
    drop: Option<(f64, &mut SeededRng)>,
) -> Result<RegionBatch, HremError> {
    let (regions, dim) = (split.regions, split.dim);
    if let Some(&bad) = images.iter().find(|&&i| i >= split.num_images) {
        return Err(HremError::Input(format!(
            "image {bad} of split `{}` which has {}",
            split.name, split.num_images
        )));
    }
    let kept: Vec<Vec<usize>> = match drop {
        Some((p, rng)) if p > 0.0 => images
            .iter()
            .map(|_| {
                let keep: Vec<usize> = (0..regions).filter(|_| !rng.bernoulli(p)).collect();
                if keep.is_empty() {
                    vec![rng.below(regions)]
                } else {
                    keep
                }
            })
            .collect(),
        _ => images.iter().map(|_| (0..regions).collect()).collect(),
    };
    let l = kept.iter().map(Vec::len).max().unwrap_or(1);
    let mut out = vec![0f32; images.len() * l * dim];
    for (b, (&img, keep)) in images.iter().zip(&kept).enumerate() {
        let features = split.image_features(img);
        for (slot, &r) in keep.iter().enumerate() {
            let dst = (b * l + slot) * dim;
            out[dst..dst + dim].copy_from_slice(&features[r * dim..(r + 1) * dim]);
        }
    }
    if out.iter().any(|v| !v.is_finite()) {
        return Err(HremError::Input(format!(
            "{}: non-finite region features",
            split.features_path.display()
        )));
    }
    Ok((
        out,
        [images.len(), l, dim],
        kept.iter().map(Vec::len).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn augmentation_keeps_specials_and_groups_pieces() {
        // [CLS] a b b' [SEP] with "b b'" one word.
        let t = Tokens {
            ids: vec![101, 7, 8, 9, 102],
            words: vec![None, Some(0), Some(1), Some(1), None],
        };
        let mut rng = SeededRng::new(0);
        // p = 0: unchanged.
        assert_eq!(augment_words(&t, 0.0, 103, 1000, &mut rng), t.ids);
        // p = 1 over many draws: specials always kept; a word's pieces share one fate.
        let mut saw = [false; 3];
        for _ in 0..200 {
            let out = augment_words(&t, 1.0, 103, 1000, &mut rng);
            assert_eq!(out[0], 101);
            assert_eq!(*out.last().unwrap(), 102);
            assert!(out.len() >= 3, "never all words deleted: {out:?}");
            if out.contains(&103) {
                saw[0] = true;
            }
            if out.len() < 5 {
                saw[1] = true;
            }
            if out
                .iter()
                .any(|&i| i >= 4 && ![101, 102, 103, 7, 8, 9].contains(&i))
            {
                saw[2] = true;
            }
            // "b b'" masked together or not at all.
            if out.len() == 5 {
                assert_eq!(out[2] == 103, out[3] == 103, "{out:?}");
            }
        }
        assert_eq!(saw, [true, true, true]);
    }

    #[test]
    fn vocab_tokens_mark_start_and_end() {
        let v = Vocab::build(["a red cube", "a blue ball"], 1);
        let t = TextTokenizer::Vocab(v).tokens("a red ball").unwrap();
        assert_eq!(t.ids.len(), 5);
        assert_eq!(t.words, vec![None, Some(0), Some(1), Some(2), None]);
    }

    #[test]
    fn padding() {
        let (ids, shape, lengths) = pad_ids(&[vec![1, 2, 3], vec![4]]);
        assert_eq!(shape, [2, 3]);
        assert_eq!(ids, vec![1, 2, 3, 4, 0, 0]);
        assert_eq!(lengths, vec![3, 1]);
    }
}
