//! `cargo xtask export`: a relata Hamming index as a FAISS `IndexBinaryFlat` file, and back.
//!
//! The route to serving past one machine: `faiss.read_index_binary(F)` loads the file, and
//! FAISS's binary IVF and HNSW indexes (or a vector database that takes binary vectors with
//! Hamming distance) can be built from the same codes.
//!
//! Layout of the file FAISS writes for an `IndexBinaryFlat` (`faiss/impl/index_write.cpp`,
//! little-endian): the fourcc `IBxF`; `d` (i32, bits) and `code_size` (i32, bytes per code);
//! `ntotal` (i64); `is_trained` (u8); `metric_type` (i32); then the codes as a vector — its
//! length in bytes (u64) and the bytes, `code_size` per code in insertion order.
//!
//! Bits are laid out as numpy's `np.packbits` does (bit `j` of a code is bit `7 − j % 8` of byte
//! `j / 8`), the layout `cargo xtask eval map` reads: pack query codes the same way and FAISS
//! returns relata's neighbours. FAISS needs `d` to be a multiple of 8; a code length that is not
//! (12 bits) is padded with zero bits, which changes no distance.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use relata_metrics::{HammingIndex, PackedCodes};

const FOURCC: &[u8; 4] = b"IBxF";
/// FAISS's `METRIC_L2`, what `IndexBinaryFlat` records (binary indexes always rank by Hamming
/// distance).
const METRIC_TYPE: i32 = 1;

/// `cargo xtask export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A relata Hamming index (`index.bin` of a CMBH run); with `--from-faiss`, where to write
    /// the relata index read back from the FAISS file.
    #[arg(long)]
    index: PathBuf,
    /// Output format: `faiss` (an `IndexBinaryFlat` file).
    #[arg(long, default_value = "faiss")]
    format: String,
    /// The FAISS file to write.
    #[arg(long, required_unless_present = "from_faiss")]
    out: Option<PathBuf>,
    /// Read this FAISS `IndexBinaryFlat` file and write it as the relata index `--index`.
    #[arg(long)]
    from_faiss: Option<PathBuf>,
}

pub fn run(args: ExportArgs) -> Result<()> {
    ensure!(
        args.format == "faiss",
        "unknown --format `{}`; known: faiss",
        args.format
    );
    if let Some(faiss) = &args.from_faiss {
        let codes = read_faiss_binary_flat(faiss)?;
        let n = codes.len();
        HammingIndex::new(codes)?
            .save(&args.index)
            .with_context(|| format!("writing {}", args.index.display()))?;
        eprintln!(
            "read {n} codes from {}, wrote {}",
            faiss.display(),
            args.index.display()
        );
        return Ok(());
    }
    let out = args
        .out
        .as_ref()
        .expect("clap requires --out without --from-faiss");
    let index = HammingIndex::load(&args.index)
        .with_context(|| format!("reading the relata index {}", args.index.display()))?;
    std::fs::write(out, faiss_binary_flat(index.codes()))
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "wrote {} {}-bit codes to {} (FAISS IndexBinaryFlat, d = {})",
        index.len(),
        index.bits(),
        out.display(),
        index.bits().div_ceil(8) * 8
    );
    Ok(())
}

/// The bytes of a FAISS `IndexBinaryFlat` holding `codes` (module comment).
pub fn faiss_binary_flat(codes: &PackedCodes) -> Vec<u8> {
    let code_size = codes.bits().div_ceil(8);
    let mut data = vec![0u8; codes.len() * code_size];
    for (i, row) in data.chunks_exact_mut(code_size).enumerate() {
        for j in 0..codes.bits() {
            if codes.bit(i, j) == 1 {
                row[j / 8] |= 0x80 >> (j % 8);
            }
        }
    }
    let mut out = Vec::with_capacity(37 + data.len());
    out.extend_from_slice(FOURCC);
    out.extend_from_slice(&((code_size * 8) as i32).to_le_bytes());
    out.extend_from_slice(&(code_size as i32).to_le_bytes());
    out.extend_from_slice(&(codes.len() as i64).to_le_bytes());
    out.push(1);
    out.extend_from_slice(&METRIC_TYPE.to_le_bytes());
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(&data);
    out
}

/// The codes of a FAISS `IndexBinaryFlat` file, `d` bits each.
pub fn read_faiss_binary_flat(path: &Path) -> Result<PackedCodes> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse_faiss_binary_flat(&bytes).with_context(|| format!("{}", path.display()))
}

fn parse_faiss_binary_flat(bytes: &[u8]) -> Result<PackedCodes> {
    let mut at = 0usize;
    let mut take = |n: usize, what: &str| -> Result<&[u8]> {
        let Some(field) = bytes.get(at..at + n) else {
            bail!(
                "truncated: {what} at byte {at} needs {n} bytes, the file has {}",
                bytes.len()
            );
        };
        at += n;
        Ok(field)
    };
    let magic = take(4, "the fourcc")?;
    if magic != FOURCC {
        bail!(
            "not a FAISS IndexBinaryFlat file: it starts with {:?}, expected \"IBxF\" (other \
             FAISS binary indexes — IVF, HNSW — are not read)",
            String::from_utf8_lossy(magic)
        );
    }
    let i32_at = |b: &[u8]| i32::from_le_bytes(b.try_into().expect("4 bytes"));
    let d = i32_at(take(4, "d")?);
    let code_size = i32_at(take(4, "code_size")?);
    let ntotal = i64::from_le_bytes(take(8, "ntotal")?.try_into().expect("8 bytes"));
    take(1, "is_trained")?;
    take(4, "metric_type")?;
    let len = u64::from_le_bytes(take(8, "the code vector's length")?.try_into().expect("8"));
    ensure!(
        d > 0 && d % 8 == 0 && code_size * 8 == d && ntotal >= 0,
        "inconsistent header: d = {d}, code_size = {code_size}, ntotal = {ntotal}"
    );
    let (code_size, n) = (code_size as usize, ntotal as usize);
    ensure!(
        len as usize == n * code_size,
        "the code vector holds {len} bytes, the header says {n} codes of {code_size}"
    );
    let data = take(len as usize, "the codes")?;
    Ok(PackedCodes::from_packbits(data, n, d as usize)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What faiss-cpu 1.15 wrote for three 16-bit codes (`fixtures/metrics/faiss/`).
    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/metrics/faiss")
            .join(name)
    }

    /// Byte for byte the file FAISS writes, read back to the same codes, and FAISS's own
    /// neighbours for the fixture's queries.
    #[test]
    fn round_trips_with_a_file_faiss_wrote() {
        let faiss_file = std::fs::read(fixture("binary_flat.faiss")).unwrap();
        let codes = read_faiss_binary_flat(&fixture("binary_flat.faiss")).unwrap();
        assert_eq!(faiss_binary_flat(&codes), faiss_file);
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixture("binary_flat.json")).unwrap()).unwrap();
        let packed: Vec<u8> = serde_json::from_value(meta["codes"].clone()).unwrap();
        let bits = meta["d"].as_u64().unwrap() as usize;
        assert_eq!(
            codes,
            PackedCodes::from_packbits(&packed, codes.len(), bits).unwrap()
        );
        let queries: Vec<u8> = serde_json::from_value(meta["queries"].clone()).unwrap();
        let nq = queries.len() / (bits / 8);
        let queries = PackedCodes::from_packbits(&queries, nq, bits).unwrap();
        let index = HammingIndex::new(codes).unwrap();
        let k = meta["k"].as_u64().unwrap() as usize;
        for q in 0..nq {
            let got = index.search(queries.code(q), k).unwrap();
            let want =
                |key: &str| -> Vec<u32> { serde_json::from_value(meta[key][q].clone()).unwrap() };
            // The same neighbours in the same order (FAISS ranks these ties by id too).
            assert_eq!(
                (got.distances, got.ids),
                (want("distances"), want("ids")),
                "query {q}"
            );
        }
    }

    /// A 12-bit code is padded to 16 bits (d = 16): no distance changes.
    #[test]
    fn odd_code_lengths_are_padded() {
        let values: Vec<f32> = (0..3 * 12)
            .map(|i| if i % 5 < 2 { 1.0 } else { -1.0 })
            .collect();
        let codes = PackedCodes::from_values(&values, 12).unwrap();
        let bytes = faiss_binary_flat(&codes);
        assert_eq!(&bytes[4..8], &16i32.to_le_bytes());
        let back = parse_faiss_binary_flat(&bytes).unwrap();
        assert_eq!(back.bits(), 16);
        for i in 0..3 {
            for j in 0..12 {
                assert_eq!(back.bit(i, j), codes.bit(i, j));
            }
            for j in 12..16 {
                assert_eq!(back.bit(i, j), 0);
            }
        }
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let good = std::fs::read(fixture("binary_flat.faiss")).unwrap();
        let err = |b: &[u8]| parse_faiss_binary_flat(b).unwrap_err().to_string();
        assert!(err(b"IwFl1234").contains("not a FAISS IndexBinaryFlat"));
        assert!(err(&good[..good.len() - 1]).contains("truncated"));
        let mut wrong = good.clone();
        wrong[4] = 12; // d = 12 is not a multiple of 8
        assert!(err(&wrong).contains("inconsistent header"));
    }
}
