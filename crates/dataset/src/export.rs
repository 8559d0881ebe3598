//! Writers for the on-disk layouts: the embedded datasets exported so any tool can read them
//! (`cargo xtask data synth`), and the tiny deterministic samples of every supported format
//! under `fixtures/datasets/` (`cargo xtask fixtures`), which the readers' tests go through.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use image::RgbImage;

use crate::error::DatasetError;
use crate::source::ImageDataset;
use crate::synth::{SynthCaptionsConfig, SynthFineConfig};

fn mkdir(p: &Path) -> Result<(), DatasetError> {
    fs::create_dir_all(p).map_err(|e| DatasetError::io(p, e))
}

fn write(p: &Path, bytes: impl AsRef<[u8]>) -> Result<(), DatasetError> {
    if let Some(parent) = p.parent() {
        mkdir(parent)?;
    }
    fs::write(p, bytes).map_err(|e| DatasetError::io(p, e))
}

/// Encodes `img` as JPEG (quality 85) or PNG, by `path`'s extension.
pub fn save_image(img: &RgbImage, path: &Path) -> Result<(), DatasetError> {
    save_image_with_quality(img, path, 85)
}

/// [`save_image`] with an explicit JPEG quality (ignored for PNG).
pub fn save_image_with_quality(
    img: &RgbImage,
    path: &Path,
    quality: u8,
) -> Result<(), DatasetError> {
    let mut bytes = Vec::new();
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let result = if ext == "png" {
        img.write_with_encoder(image::codecs::png::PngEncoder::new(&mut bytes))
    } else {
        img.write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(
            &mut bytes, quality,
        ))
    };
    result
        .map_err(|e| DatasetError::invalid("image encoding", format!("{}: {e}", path.display())))?;
    write(path, bytes)
}

/// Writes an in-memory dataset as ImageFolder: `dir/<split>/<class>/<index>.png`.
pub fn write_image_folder(ds: &ImageDataset, dir: &Path) -> Result<usize, DatasetError> {
    let mut written = 0;
    for (split, samples) in &ds.splits {
        for (i, s) in samples.iter().enumerate() {
            let img = s.image.load_rgb()?;
            let path = dir
                .join(split)
                .join(&ds.classes[s.label])
                .join(format!("{i:06}.png"));
            save_image(&img, &path)?;
            written += 1;
        }
    }
    Ok(written)
}

/// Source images for fixtures: synth-fine pictures, resized to varied small sizes.
struct FixtureImages {
    pool: Vec<RgbImage>,
}

impl FixtureImages {
    fn new() -> Result<Self, DatasetError> {
        let synth = SynthFineConfig {
            families: 2,
            classes_per_family: 2,
            modes: 2,
            train_per_class: 6,
            test_per_class: 0,
            image_size: 32,
            seed: 7,
        }
        .generate()?;
        let pool = synth.dataset.splits["train"]
            .iter()
            .map(|s| s.image.load_rgb())
            .collect::<Result<_, _>>()?;
        Ok(Self { pool })
    }

    /// Image `i`, at one of a few small sizes (so `inspect` sees a size range). Resized with
    /// `image`'s scalar filter rather than the SIMD pipeline resize, whose rounding may depend
    /// on the CPU's instruction set: the committed fixtures must regenerate byte for byte.
    fn get(&self, i: usize) -> Result<RgbImage, DatasetError> {
        let (w, h) = [(40, 30), (30, 40), (36, 36), (48, 32)][i % 4];
        Ok(image::imageops::resize(
            &self.pool[i % self.pool.len()],
            w,
            h,
            image::imageops::FilterType::Triangle,
        ))
    }

    fn raw32(&self, i: usize) -> &RgbImage {
        &self.pool[i % self.pool.len()]
    }
}

/// Writes a tiny sample of every supported format under `root` (deterministic); returns the
/// formats written.
#[doc(hidden)] // `cargo xtask data fixtures` regenerates `fixtures/` with it; not a user API
pub fn write_fixtures(root: &Path) -> Result<Vec<String>, DatasetError> {
    type Writer = fn(&Path, &FixtureImages) -> Result<(), DatasetError>;
    const WRITERS: [(&str, Writer); 10] = [
        ("cub", write_cub),
        ("nabirds", write_nabirds),
        ("aircraft", write_aircraft),
        ("food101", write_food101),
        ("vegfru", write_vegfru),
        ("cifar10", write_cifar10),
        ("cifar100", write_cifar100),
        ("svhn", write_svhn),
        ("imagefolder", write_imagefolder),
        ("precomp", write_precomp),
    ];
    let imgs = FixtureImages::new()?;
    let mut written = Vec::new();
    for (name, write_format) in WRITERS {
        write_format(root, &imgs)?;
        written.push(name.to_string());
    }
    Ok(written)
}

/// One CIFAR binary record: the label bytes, then the image's red, green and blue planes.
fn cifar_record(imgs: &FixtureImages, i: usize, labels: &[u8]) -> Vec<u8> {
    let img = imgs.raw32(i);
    let mut r = labels.to_vec();
    for c in 0..3 {
        r.extend(img.as_raw().chunks_exact(3).map(|p| p[c]));
    }
    r
}

/// The `cub` fixture. CUB-200-2011: 3 classes × (2 train + 1 test).
fn write_cub(root: &Path, imgs: &FixtureImages) -> Result<(), DatasetError> {
    let dir = root.join("cub/CUB_200_2011");
    let names = [
        "001.Black_footed_Albatross",
        "002.Laysan_Albatross",
        "003.Sooty_Albatross",
    ];
    let (mut images, mut labels, mut split, mut classes) =
        (String::new(), String::new(), String::new(), String::new());
    let mut id = 1;
    for (c, name) in names.iter().enumerate() {
        let _ = writeln!(classes, "{} {name}", c + 1);
        for k in 0..3 {
            let rel = format!("{name}/{}_{:04}_{k}.jpg", &name[4..], 100 + id);
            save_image(&imgs.get(id)?, &dir.join("images").join(&rel))?;
            let _ = writeln!(images, "{id} {rel}");
            let _ = writeln!(labels, "{id} {}", c + 1);
            let _ = writeln!(split, "{id} {}", u8::from(k < 2));
            id += 1;
        }
    }
    write(&dir.join("images.txt"), images)?;
    write(&dir.join("image_class_labels.txt"), labels)?;
    write(&dir.join("train_test_split.txt"), split)?;
    write(&dir.join("classes.txt"), classes)?;
    Ok(())
}

/// The `nabirds` fixture. NABirds: a taxonomy with internal nodes (no images) and three leaves with images.
fn write_nabirds(root: &Path, imgs: &FixtureImages) -> Result<(), DatasetError> {
    let dir = root.join("nabirds");
    let taxonomy = [
        (0, "Birds"),
        (1, "Perching Birds"),
        (295, "Blue Jay"),
        (313, "Northern Cardinal (Adult Male)"),
        (400, "American Robin"),
        (401, "Song Sparrow"),
    ];
    let leaves = [295u32, 313, 400];
    let (mut images, mut labels, mut split, mut classes) =
        (String::new(), String::new(), String::new(), String::new());
    for (id, name) in taxonomy {
        let _ = writeln!(classes, "{id} {name}");
    }
    let mut n = 0;
    for &leaf in &leaves {
        for k in 0..3 {
            let uuid = format!("{:08x}-0000-4000-8000-{:012x}", 0x1000 + n, n);
            let rel = format!("{leaf:04}/{uuid}.jpg");
            save_image(&imgs.get(n + 1)?, &dir.join("images").join(&rel))?;
            let _ = writeln!(images, "{uuid} {rel}");
            let _ = writeln!(labels, "{uuid} {leaf}");
            let _ = writeln!(split, "{uuid} {}", u8::from(k != 1));
            n += 1;
        }
    }
    write(&dir.join("images.txt"), images)?;
    write(&dir.join("image_class_labels.txt"), labels)?;
    write(&dir.join("train_test_split.txt"), split)?;
    write(&dir.join("classes.txt"), classes)?;
    Ok(())
}

/// The `aircraft` fixture. FGVC-Aircraft: variant names with spaces and slashes.
fn write_aircraft(root: &Path, imgs: &FixtureImages) -> Result<(), DatasetError> {
    let dir = root.join("aircraft/fgvc-aircraft-2013b/data");
    let variants = ["737-200", "F/A-18", "Cessna 172"];
    write(&dir.join("variants.txt"), variants.join("\n") + "\n")?;
    let (mut trainval, mut test) = (String::new(), String::new());
    let mut n = 0;
    for v in variants {
        for k in 0..3 {
            let id = format!("{:07}", 1_000_000 + n * 137);
            save_image(
                &imgs.get(n + 2)?,
                &dir.join("images").join(format!("{id}.jpg")),
            )?;
            let list = if k < 2 { &mut trainval } else { &mut test };
            let _ = writeln!(list, "{id} {v}");
            n += 1;
        }
    }
    write(&dir.join("images_variant_trainval.txt"), trainval)?;
    write(&dir.join("images_variant_test.txt"), test)?;
    Ok(())
}

/// The `food101` fixture. Food-101.
fn write_food101(root: &Path, imgs: &FixtureImages) -> Result<(), DatasetError> {
    let dir = root.join("food101/food-101");
    let classes = ["apple_pie", "baby_back_ribs", "baklava"];
    write(&dir.join("meta/classes.txt"), classes.join("\n") + "\n")?;
    let (mut train, mut test) = (String::new(), String::new());
    let mut n = 0;
    for c in classes {
        for k in 0..3 {
            let id = 100_000 + n * 7919;
            save_image(&imgs.get(n + 3)?, &dir.join(format!("images/{c}/{id}.jpg")))?;
            let list = if k < 2 { &mut train } else { &mut test };
            let _ = writeln!(list, "{c}/{id}");
            n += 1;
        }
    }
    write(&dir.join("meta/train.txt"), train)?;
    write(&dir.join("meta/test.txt"), test)?;
    Ok(())
}

/// The `vegfru` fixture. VegFru: vegetables and fruits in one label space, train/val/test lists.
fn write_vegfru(root: &Path, imgs: &FixtureImages) -> Result<(), DatasetError> {
    let dir = root.join("vegfru");
    let classes = [
        ("veg200_images", "Chinese_artichoke"),
        ("veg200_images", "bitter_gourd"),
        ("fru92_images", "blood_orange"),
    ];
    let mut lists = [String::new(), String::new(), String::new()];
    let mut n = 0;
    for (label, (top, cls)) in classes.iter().enumerate() {
        for k in 0..4 {
            let rel = format!("{top}/{cls}/{}_{label:03}_{k:04}.jpg", &cls[..1]);
            save_image(&imgs.get(n + 4)?, &dir.join(&rel))?;
            let which = [0, 0, 1, 2][k];
            let _ = writeln!(lists[which], "{rel} {label}");
            n += 1;
        }
    }
    for (name, text) in ["train", "val", "test"].iter().zip(&lists) {
        write(&dir.join(format!("vegfru_list/vegfru_{name}.txt")), text)?;
    }
    Ok(())
}

/// The `cifar10` fixture. CIFAR-10: two small training batches and a test batch.
fn write_cifar10(root: &Path, imgs: &FixtureImages) -> Result<(), DatasetError> {
    let dir = root.join("cifar10/cifar-10-batches-bin");
    for (b, file) in ["data_batch_1.bin", "data_batch_2.bin", "test_batch.bin"]
        .iter()
        .enumerate()
    {
        let bytes: Vec<u8> = (0..4)
            .flat_map(|k| cifar_record(imgs, b * 4 + k, &[((b * 4 + k) % 10) as u8]))
            .collect();
        write(&dir.join(file), bytes)?;
    }
    write(
        &dir.join("batches.meta.txt"),
        "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n",
    )?;
    Ok(())
}

/// The `cifar100` fixture. CIFAR-100: a training and a test file, fine and coarse labels.
fn write_cifar100(root: &Path, imgs: &FixtureImages) -> Result<(), DatasetError> {
    let dir = root.join("cifar100/cifar-100-binary");
    for (b, file) in ["train.bin", "test.bin"].iter().enumerate() {
        let n = if b == 0 { 6 } else { 3 };
        let bytes: Vec<u8> = (0..n)
            .flat_map(|k| {
                let fine = ((k * 37 + b * 11) % 100) as u8;
                cifar_record(imgs, k + b, &[fine / 5, fine])
            })
            .collect();
        write(&dir.join(file), bytes)?;
    }
    let names: String = (0..100).map(|i| format!("fine_class_{i:02}\n")).collect();
    write(&dir.join("fine_label_names.txt"), names)?;
    let coarse: String = (0..20).map(|i| format!("coarse_class_{i:02}\n")).collect();
    write(&dir.join("coarse_label_names.txt"), coarse)?;
    Ok(())
}

/// The `svhn` fixture. SVHN format 2 (uncompressed MATLAB v5, as scipy.io.savemat writes by default).
fn write_svhn(root: &Path, imgs: &FixtureImages) -> Result<(), DatasetError> {
    let dir = root.join("svhn");
    for (s, (file, n)) in [("train_32x32.mat", 5usize), ("test_32x32.mat", 3)]
        .into_iter()
        .enumerate()
    {
        let mut x = vec![0u8; 32 * 32 * 3 * n];
        for img in 0..n {
            let src = imgs.raw32(img + s * 5);
            for h in 0..32 {
                for w in 0..32 {
                    for c in 0..3 {
                        x[h + 32 * w + 1024 * c + 3072 * img] = src.as_raw()[(h * 32 + w) * 3 + c];
                    }
                }
            }
        }
        // Digits 1..10, 10 meaning 0.
        let y: Vec<f64> = (0..n).map(|i| ((i + s * 3) % 10 + 1) as f64).collect();
        write(
            &dir.join(file),
            mat5(&[
                ("X", MatData::U8(&x), &[32, 32, 3, n]),
                ("y", MatData::F64(&y), &[n, 1]),
            ]),
        )?;
    }
    Ok(())
}

/// The `imagefolder` fixture. ImageFolder: PNG in train, JPEG in test.
fn write_imagefolder(root: &Path, imgs: &FixtureImages) -> Result<(), DatasetError> {
    let dir = root.join("imagefolder");
    let mut n = 0;
    for class in ["cat", "dog", "fox"] {
        for k in 0..3 {
            let (split, ext) = if k < 2 {
                ("train", "png")
            } else {
                ("test", "jpg")
            };
            save_image(
                &imgs.get(n + 5)?,
                &dir.join(format!("{split}/{class}/{class}_{k}.{ext}")),
            )?;
            n += 1;
        }
    }
    Ok(())
}

/// The `precomp` fixture. SCAN precomp: a miniature synth-captions.
fn write_precomp(root: &Path, _: &FixtureImages) -> Result<(), DatasetError> {
    SynthCaptionsConfig {
        train: 4,
        dev: 2,
        test: 2,
        regions: 4,
        dim: 8,
        noise: 0.3,
        seed: 3,
        ..Default::default()
    }
    .write(&root.join("precomp"))?;
    Ok(())
}

/// Data of one MATLAB array.
pub enum MatData<'a> {
    /// uint8.
    U8(&'a [u8]),
    /// double.
    F64(&'a [f64]),
}

/// Serialises arrays as an uncompressed MATLAB level-5 file (column-major data expected).
pub fn mat5(arrays: &[(&str, MatData<'_>, &[usize])]) -> Vec<u8> {
    fn element(out: &mut Vec<u8>, ty: u32, data: &[u8]) {
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(8), 0);
    }
    let mut out = Vec::new();
    let mut text = b"MATLAB 5.0 MAT-file, written by relata".to_vec();
    text.resize(116, b' ');
    out.extend_from_slice(&text);
    out.extend_from_slice(&[0u8; 8]);
    out.extend_from_slice(&0x0100u16.to_le_bytes());
    out.extend_from_slice(b"IM");
    for (name, data, dims) in arrays {
        let mut body = Vec::new();
        let class: u32 = match data {
            MatData::U8(_) => 9,
            MatData::F64(_) => 6,
        };
        let mut flags = Vec::new();
        flags.extend_from_slice(&class.to_le_bytes());
        flags.extend_from_slice(&0u32.to_le_bytes());
        element(&mut body, 6, &flags); // miUINT32 array flags
        let d: Vec<u8> = dims
            .iter()
            .flat_map(|&v| (v as i32).to_le_bytes())
            .collect();
        element(&mut body, 5, &d); // miINT32 dimensions
        element(&mut body, 1, name.as_bytes()); // miINT8 name
        match data {
            MatData::U8(v) => element(&mut body, 2, v), // miUINT8
            MatData::F64(v) => {
                let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                element(&mut body, 9, &b) // miDOUBLE
            }
        }
        element(&mut out, 14, &body); // miMATRIX
    }
    out
}
