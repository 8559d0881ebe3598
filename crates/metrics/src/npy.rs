//! Reading NumPy `.npy` files (via `npyz`) for the evaluation CLI.
//!
//! Numbers keep a compact native type (`f32` stays `f32`, so a 5,000 × 25,000 similarity
//! matrix is 500 MB, not 1 GB); integers of any width become `i64`, except `uint8`, kept as
//! bytes because packed hash codes (`np.packbits`) arrive that way. Fortran-ordered 2-D arrays
//! are transposed to row-major. Every error names the file.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use npyz::{NpyFile, Order, TypeChar};

use crate::error::{MetricsError, Result};

/// The values of an array, in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    /// `float32`.
    F32(Vec<f32>),
    /// `float64`.
    F64(Vec<f64>),
    /// Any signed or unsigned integer wider than a byte, or `int8`.
    Int(Vec<i64>),
    /// `uint8`.
    U8(Vec<u8>),
    /// `bool`.
    Bool(Vec<bool>),
}

/// A loaded `.npy` array.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// The file it came from (for error messages).
    pub path: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its values, row-major.
    pub data: NpyData,
}

fn err(path: &str, reason: impl Into<String>) -> MetricsError {
    MetricsError::Corrupt {
        path: path.to_string(),
        reason: reason.into(),
    }
}

impl NpyArray {
    /// Reads `path`.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let p = path.display().to_string();
        let file = File::open(path).map_err(|source| MetricsError::Io {
            path: p.clone(),
            source,
        })?;
        let npy = NpyFile::new(BufReader::new(file))
            .map_err(|e| err(&p, format!("not a readable .npy file: {e}")))?;
        let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
        let order = npy.order();
        let dtype = npy.dtype();
        let npyz::DType::Plain(ts) = &dtype else {
            return Err(err(
                &p,
                format!("unsupported structured dtype {}", dtype.descr()),
            ));
        };
        let descr = dtype.descr();
        let io = |e: std::io::Error| err(&p, format!("reading {descr} data: {e}"));
        let data = match (ts.type_char(), ts.size_field()) {
            (TypeChar::Float, 4) => NpyData::F32(npy.into_vec::<f32>().map_err(io)?),
            (TypeChar::Float, 8) => NpyData::F64(npy.into_vec::<f64>().map_err(io)?),
            (TypeChar::Int, 1) => NpyData::Int(widen(npy.into_vec::<i8>().map_err(io)?)),
            (TypeChar::Int, 2) => NpyData::Int(widen(npy.into_vec::<i16>().map_err(io)?)),
            (TypeChar::Int, 4) => NpyData::Int(widen(npy.into_vec::<i32>().map_err(io)?)),
            (TypeChar::Int, 8) => NpyData::Int(npy.into_vec::<i64>().map_err(io)?),
            (TypeChar::Uint, 1) => NpyData::U8(npy.into_vec::<u8>().map_err(io)?),
            (TypeChar::Uint, 2) => NpyData::Int(widen(npy.into_vec::<u16>().map_err(io)?)),
            (TypeChar::Uint, 4) => NpyData::Int(widen(npy.into_vec::<u32>().map_err(io)?)),
            (TypeChar::Uint, 8) => {
                let v = npy.into_vec::<u64>().map_err(io)?;
                NpyData::Int(
                    v.into_iter()
                        .map(|x| i64::try_from(x).map_err(|_| err(&p, "uint64 value too large")))
                        .collect::<Result<_>>()?,
                )
            }
            (TypeChar::Bool, _) => NpyData::Bool(npy.into_vec::<bool>().map_err(io)?),
            _ => {
                return Err(err(
                    &p,
                    format!("unsupported dtype {descr}; expected a float, integer or bool array"),
                ));
            }
        };
        let mut array = NpyArray {
            path: p,
            shape,
            data,
        };
        if order == Order::Fortran && array.shape.len() == 2 {
            array.transpose_from_fortran();
        } else if order == Order::Fortran && array.shape.len() > 2 {
            return Err(err(
                &array.path,
                "Fortran-ordered arrays above 2-D are not supported",
            ));
        }
        Ok(array)
    }

    fn transpose_from_fortran(&mut self) {
        let (r, c) = (self.shape[0], self.shape[1]);
        fn t<T: Copy>(v: &[T], r: usize, c: usize) -> Vec<T> {
            // Column-major v[j * r + i] → row-major out[i * c + j].
            let mut out = Vec::with_capacity(v.len());
            for i in 0..r {
                for j in 0..c {
                    out.push(v[j * r + i]);
                }
            }
            out
        }
        self.data = match &self.data {
            NpyData::F32(v) => NpyData::F32(t(v, r, c)),
            NpyData::F64(v) => NpyData::F64(t(v, r, c)),
            NpyData::Int(v) => NpyData::Int(t(v, r, c)),
            NpyData::U8(v) => NpyData::U8(t(v, r, c)),
            NpyData::Bool(v) => NpyData::Bool(t(v, r, c)),
        };
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `(rows, cols)` of a 2-D array (a 1-D array is one column).
    pub fn matrix_shape(&self) -> Result<(usize, usize)> {
        match self.shape.as_slice() {
            [n] => Ok((*n, 1)),
            [n, c] => Ok((*n, *c)),
            s => Err(err(
                &self.path,
                format!("expected a 1-D or 2-D array, got shape {s:?}"),
            )),
        }
    }

    /// The values as `f32`.
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            NpyData::F32(v) => v.clone(),
            NpyData::F64(v) => v.iter().map(|&x| x as f32).collect(),
            NpyData::Int(v) => v.iter().map(|&x| x as f32).collect(),
            NpyData::U8(v) => v.iter().map(|&x| x as f32).collect(),
            NpyData::Bool(v) => v.iter().map(|&x| x as u8 as f32).collect(),
        }
    }

    /// The values as integer ids; floats must be whole numbers.
    pub fn to_i64(&self) -> Result<Vec<i64>> {
        let whole = |x: f64| {
            if x.fract() == 0.0 && x.is_finite() {
                Ok(x as i64)
            } else {
                Err(err(
                    &self.path,
                    format!("expected integer labels, found {x}"),
                ))
            }
        };
        match &self.data {
            NpyData::F32(v) => v.iter().map(|&x| whole(x as f64)).collect(),
            NpyData::F64(v) => v.iter().map(|&x| whole(x)).collect(),
            NpyData::Int(v) => Ok(v.clone()),
            NpyData::U8(v) => Ok(v.iter().map(|&x| x as i64).collect()),
            NpyData::Bool(v) => Ok(v.iter().map(|&x| x as i64).collect()),
        }
    }
}

fn widen<T: Into<i64>>(v: Vec<T>) -> Vec<i64> {
    v.into_iter().map(Into::into).collect()
}

/// Element types [`write_npy`] can store.
pub trait NpyElement: Copy {
    /// NumPy dtype descriptor (little endian).
    const DESCR: &'static str;
    /// Appends the little-endian bytes of `self`.
    fn put(self, out: &mut Vec<u8>);
}

macro_rules! npy_element {
    ($t:ty, $d:expr) => {
        impl NpyElement for $t {
            const DESCR: &'static str = $d;
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    };
}
npy_element!(f32, "<f4");
npy_element!(f64, "<f8");
npy_element!(i64, "<i8");
npy_element!(i32, "<i4");
npy_element!(u8, "|u1");
npy_element!(i8, "|i1");

/// Writes a row-major array as a version-1.0 `.npy` file (for benchmarks, fixtures and
/// `cargo xtask` outputs that other tools read).
pub fn write_npy<T: NpyElement>(path: impl AsRef<Path>, shape: &[usize], data: &[T]) -> Result<()> {
    let path = path.as_ref();
    let p = path.display().to_string();
    if shape.iter().product::<usize>() != data.len() {
        return Err(crate::error::shape(format!(
            "{p}: shape {shape:?} does not hold {} values",
            data.len()
        )));
    }
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {tuple}, }}",
        T::DESCR
    );
    // Magic (6) + version (2) + header length (2) + header + '\n' is a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 8);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for &v in data {
        v.put(&mut out);
    }
    std::fs::write(path, out).map_err(|source| MetricsError::Io { path: p, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_round_trips() {
        let dir = std::env::temp_dir().join(format!("relata-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.npy");
        write_npy(&p, &[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let a = NpyArray::read(&p).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data, NpyData::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
        write_npy(&p, &[3], &[7i64, -1, 2]).unwrap();
        assert_eq!(
            NpyArray::read(&p).unwrap().to_i64().unwrap(),
            vec![7, -1, 2]
        );
        write_npy(&p, &[2, 2], &[1u8, 255, 0, 3]).unwrap();
        assert_eq!(
            NpyArray::read(&p).unwrap().data,
            NpyData::U8(vec![1, 255, 0, 3])
        );
        assert!(write_npy(&p, &[2, 2], &[1u8]).is_err());
        std::fs::write(&p, b"garbage").unwrap();
        let e = NpyArray::read(&p).unwrap_err().to_string();
        assert!(e.contains("a.npy"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
