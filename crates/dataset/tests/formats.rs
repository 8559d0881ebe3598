//! Every fixture under `fixtures/datasets/` read through the public API, and corrupt variants
//! (truncated image, missing list file, label out of range, partial record, caption count)
//! producing the documented errors.

use std::fs;
use std::path::{Path, PathBuf};

use relata_dataset::inspect::inspect;
use relata_dataset::{
    BatchLoader, DatasetError, Format, Pipeline, PrecompDataset, ReadOptions, SeededRng,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn dataset_dir(name: &str) -> PathBuf {
    fixtures().join("datasets").join(name)
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A scratch copy of a fixture.
fn scratch(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(name);
    copy_dir(&dataset_dir(name), &dir);
    (tmp, dir)
}

fn open(format: Format, dir: &Path) -> Result<relata_dataset::ImageDataset, DatasetError> {
    format.open(dir, ReadOptions::default())
}

#[test]
fn every_image_fixture_reads_with_official_splits() {
    let expect = [
        (Format::Cub, "cub", 3, vec![("test", 3), ("train", 6)]),
        (
            Format::Aircraft,
            "aircraft",
            3,
            vec![("test", 3), ("train", 6)],
        ),
        (
            Format::Food101,
            "food101",
            3,
            vec![("test", 3), ("train", 6)],
        ),
        (
            Format::Nabirds,
            "nabirds",
            3,
            vec![("test", 3), ("train", 6)],
        ),
        (
            Format::Vegfru,
            "vegfru",
            3,
            vec![("test", 3), ("train", 6), ("val", 3)],
        ),
        (
            Format::Cifar10,
            "cifar10",
            10,
            vec![("test", 4), ("train", 8)],
        ),
        (
            Format::Cifar100,
            "cifar100",
            100,
            vec![("test", 3), ("train", 6)],
        ),
        (Format::Svhn, "svhn", 10, vec![("test", 3), ("train", 5)]),
        (
            Format::ImageFolder,
            "imagefolder",
            3,
            vec![("test", 3), ("train", 6)],
        ),
    ];
    for (format, dir, classes, splits) in expect {
        let ds = format
            .open(
                &dataset_dir(dir),
                ReadOptions {
                    skip_unreadable: false,
                    verify_images: true,
                },
            )
            .unwrap_or_else(|e| panic!("{format}: {e}"));
        assert_eq!(ds.num_classes(), classes, "{format}");
        let got: Vec<(&str, usize)> = ds
            .splits
            .iter()
            .map(|(k, v)| (k.as_str(), v.len()))
            .collect();
        assert_eq!(got, splits, "{format}");
        for samples in ds.splits.values() {
            for s in samples {
                assert!(s.label < classes);
                let img = s.image.load_rgb().unwrap();
                assert!(img.width() >= 30 && img.height() >= 30);
            }
        }
        assert!(ds.problems.is_empty(), "{format}: {:?}", ds.problems);
    }
}

#[test]
fn format_specific_semantics() {
    // NABirds: internal taxonomy nodes dropped, the three leaves with images remapped to 0..3.
    let nab = open(Format::Nabirds, &dataset_dir("nabirds")).unwrap();
    assert_eq!(
        nab.classes,
        vec![
            "Blue Jay",
            "Northern Cardinal (Adult Male)",
            "American Robin"
        ]
    );
    // Aircraft: variant names with spaces and slashes are whole class names.
    let air = open(Format::Aircraft, &dataset_dir("aircraft")).unwrap();
    assert_eq!(air.classes, vec!["737-200", "F/A-18", "Cessna 172"]);
    // CUB: class names from classes.txt, labels 1-based in the files, 0-based here.
    let cub = open(Format::Cub, &dataset_dir("cub")).unwrap();
    assert_eq!(cub.classes[2], "003.Sooty_Albatross");
    assert_eq!(cub.splits["train"][0].label, 0);
    assert_eq!(cub.splits["test"][2].label, 2);
    // VegFru: names from the image directories.
    let veg = open(Format::Vegfru, &dataset_dir("vegfru")).unwrap();
    assert_eq!(veg.classes[2], "blood_orange");
    // CIFAR-100 fine labels and names; CIFAR-10 names from batches.meta.txt.
    let c100 = open(Format::Cifar100, &dataset_dir("cifar100")).unwrap();
    assert_eq!(c100.splits["train"][1].label, 37);
    assert_eq!(c100.classes[37], "fine_class_37");
    let c10 = open(Format::Cifar10, &dataset_dir("cifar10")).unwrap();
    assert_eq!(c10.classes[9], "truck");
    assert_eq!(c10.splits["train"][5].label, 5);
    // The CIFAR and SVHN fixtures store the same first picture, CHW planes vs MATLAB
    // column-major: both decode to the same HWC image.
    let svhn = open(Format::Svhn, &dataset_dir("svhn")).unwrap();
    assert_eq!(
        c10.splits["train"][0].image.load_rgb().unwrap(),
        svhn.splits["train"][0].image.load_rgb().unwrap()
    );
    // SVHN label 10 means digit 0.
    let labels: Vec<usize> = svhn.splits["train"].iter().map(|s| s.label).collect();
    assert_eq!(labels, vec![1, 2, 3, 4, 5]);
}

#[test]
fn svhn_written_by_scipy_with_compression() {
    let ds = open(Format::Svhn, &fixtures().join("svhn-scipy")).unwrap();
    let labels: Vec<usize> = ds.splits["train"].iter().map(|s| s.label).collect();
    assert_eq!(labels, vec![8, 9, 0, 1]);
    // make.py: X[h, w, c, i] = (h·(i+1) + w·(c+2) + 7i) mod 256.
    let img = ds.splits["train"][2].image.load_rgb().unwrap();
    for (h, w, c) in [(0, 0, 0), (5, 7, 1), (31, 30, 2)] {
        let expect = ((h * 3 + w * (c + 2) + 14) % 256) as u8;
        assert_eq!(
            img.get_pixel(w as u32, h as u32).0[c],
            expect,
            "({h},{w},{c})"
        );
    }
}

#[test]
fn precomp_fixture_reads_and_maps() {
    let ds = PrecompDataset::open(&dataset_dir("precomp")).unwrap();
    let train = ds.split("train").unwrap();
    assert_eq!((train.num_images, train.regions, train.dim), (4, 4, 8));
    assert_eq!(train.captions.len(), 20);
    assert_eq!(train.image_of_caption(19), 3);
    assert!(
        train
            .image_features(3)
            .iter()
            .all(|v| v.is_finite() && *v >= 0.0)
    );
    assert!(
        ds.split("val")
            .unwrap_err()
            .to_string()
            .contains("dev, test, train")
    );
}

#[test]
fn truncated_image_is_named_or_skipped() {
    let (_tmp, dir) = scratch("cub");
    let victim = dir.join("CUB_200_2011/images/002.Laysan_Albatross/Laysan_Albatross_0105_1.jpg");
    let bytes = fs::read(&victim).unwrap();
    fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    // Opening without verification succeeds (the file exists); decoding names it.
    let ds = open(Format::Cub, &dir).unwrap();
    let sample = ds.splits["train"]
        .iter()
        .find(|s| s.image.describe().ends_with("Laysan_Albatross_0105_1.jpg"))
        .unwrap();
    let err = sample.image.load_rgb().unwrap_err();
    assert!(matches!(err, DatasetError::Decode { .. }), "{err}");
    assert!(
        err.to_string().contains("Laysan_Albatross_0105_1.jpg"),
        "{err}"
    );
    // verify_images fails on it; skip_unreadable drops it and reports it.
    let strict = Format::Cub.open(
        &dir,
        ReadOptions {
            skip_unreadable: false,
            verify_images: true,
        },
    );
    let Err(DatasetError::Unreadable { files, .. }) = strict else {
        panic!("verification names the unreadable images");
    };
    assert_eq!(files.len(), 1);
    assert!(
        files[0].contains("Laysan_Albatross_0105_1.jpg"),
        "{files:?}"
    );
    let lenient = Format::Cub
        .open(
            &dir,
            ReadOptions {
                skip_unreadable: true,
                verify_images: true,
            },
        )
        .unwrap();
    assert_eq!(lenient.splits["train"].len(), 5);
    assert_eq!(lenient.problems.len(), 1);
    assert!(
        lenient.problems[0].contains("truncated"),
        "{:?}",
        lenient.problems
    );
    // inspect lists it under problems and still reports the layout.
    let report = inspect("cub", &dir).unwrap();
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0]
            .as_str()
            .unwrap()
            .contains("Laysan_Albatross_0105_1.jpg")
    );
}

#[test]
fn missing_list_file_and_missing_image() {
    for (name, format, list) in [
        ("cub", Format::Cub, "CUB_200_2011/train_test_split.txt"),
        ("food101", Format::Food101, "food-101/meta/test.txt"),
        (
            "aircraft",
            Format::Aircraft,
            "fgvc-aircraft-2013b/data/variants.txt",
        ),
        ("vegfru", Format::Vegfru, "vegfru_list/vegfru_test.txt"),
        ("nabirds", Format::Nabirds, "classes.txt"),
        (
            "cifar10",
            Format::Cifar10,
            "cifar-10-batches-bin/test_batch.bin",
        ),
        ("svhn", Format::Svhn, "test_32x32.mat"),
    ] {
        let (_tmp, dir) = scratch(name);
        fs::remove_file(dir.join(list)).unwrap();
        let err = open(format, &dir).unwrap_err();
        assert!(matches!(err, DatasetError::Missing { .. }), "{name}: {err}");
        let file = Path::new(list)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(err.to_string().contains(&file), "{name}: {err}");
        assert!(inspect(name, &dir).is_err());
    }
    let (_tmp, dir) = scratch("food101");
    fs::remove_file(
        dir.join("food-101/images/baklava")
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    )
    .unwrap();
    let err = open(Format::Food101, &dir).unwrap_err();
    assert!(err.to_string().contains("baklava"), "{err}");
    let skipped = Format::Food101
        .open(
            &dir,
            ReadOptions {
                skip_unreadable: true,
                verify_images: false,
            },
        )
        .unwrap();
    assert_eq!(skipped.problems.len(), 1);
}

#[test]
fn label_out_of_range_names_file_and_line() {
    let (_tmp, dir) = scratch("cub");
    let p = dir.join("CUB_200_2011/image_class_labels.txt");
    let text = fs::read_to_string(&p).unwrap().replace("4 2\n", "4 999\n");
    fs::write(&p, text).unwrap();
    let err = open(Format::Cub, &dir).unwrap_err();
    match &err {
        DatasetError::UnknownLabel { line, label, .. } => {
            assert_eq!((*line, label.as_str()), (Some(4), "999"));
        }
        other => panic!("expected UnknownLabel, got {other}"),
    }
    assert!(
        err.to_string().contains("image_class_labels.txt, line 4"),
        "{err}"
    );

    let (_tmp, dir) = scratch("food101");
    let p = dir.join("food-101/meta/train.txt");
    fs::write(&p, fs::read_to_string(&p).unwrap() + "pizza/123\n").unwrap();
    assert!(matches!(
        open(Format::Food101, &dir),
        Err(DatasetError::UnknownLabel { .. })
    ));

    let (_tmp, dir) = scratch("aircraft");
    let p = dir.join("fgvc-aircraft-2013b/data/images_variant_test.txt");
    fs::write(&p, fs::read_to_string(&p).unwrap() + "1000000 Boeing 747\n").unwrap();
    assert!(matches!(
        open(Format::Aircraft, &dir),
        Err(DatasetError::UnknownLabel { .. })
    ));

    let (_tmp, dir) = scratch("cifar10");
    let p = dir.join("cifar-10-batches-bin/test_batch.bin");
    let mut bytes = fs::read(&p).unwrap();
    bytes[3073] = 12;
    fs::write(&p, bytes).unwrap();
    let err = open(Format::Cifar10, &dir).unwrap_err();
    assert!(err.to_string().contains("record 1"), "{err}");
}

#[test]
fn partial_records_and_count_mismatches() {
    let (_tmp, dir) = scratch("cifar100");
    let p = dir.join("cifar-100-binary/train.bin");
    let bytes = fs::read(&p).unwrap();
    fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
    let err = open(Format::Cifar100, &dir).unwrap_err();
    assert!(
        err.to_string()
            .contains("not a whole number of 3074-byte records"),
        "{err}"
    );

    let (_tmp, dir) = scratch("cub");
    let p = dir.join("CUB_200_2011/train_test_split.txt");
    let text = fs::read_to_string(&p).unwrap();
    fs::write(&p, text.lines().skip(1).collect::<Vec<_>>().join("\n")).unwrap();
    assert!(matches!(
        open(Format::Cub, &dir),
        Err(DatasetError::Count { .. })
    ));

    let (_tmp, dir) = scratch("precomp");
    let p = dir.join("test_caps.txt");
    fs::write(
        &p,
        fs::read_to_string(&p).unwrap() + "one caption too many .\n",
    )
    .unwrap();
    let err = PrecompDataset::open(&dir).unwrap_err();
    assert!(
        matches!(
            err,
            DatasetError::Count {
                expected: 10,
                found: 11,
                ..
            }
        ),
        "{err}"
    );

    let (_tmp, dir) = scratch("precomp");
    let p = dir.join("dev_ims.npy");
    let bytes = fs::read(&p).unwrap();
    fs::write(&p, &bytes[..bytes.len() - 8]).unwrap();
    assert!(
        PrecompDataset::open(&dir)
            .unwrap_err()
            .to_string()
            .contains("truncated")
    );

    // Class directories with no split level are one split, `all`.
    let (_tmp, dir) = scratch("imagefolder");
    let flat = open(Format::ImageFolder, &dir.join("train")).unwrap();
    assert_eq!(flat.splits.keys().collect::<Vec<_>>(), ["all"]);
    assert_eq!(
        (flat.num_classes(), flat.split("all").unwrap().len()),
        (3, 6)
    );
    // Class directories beside split directories is refused; so is an empty class.
    std::fs::create_dir_all(dir.join("cat")).unwrap();
    std::fs::copy(dir.join("train/cat/cat_0.png"), dir.join("cat/cat_9.png")).unwrap();
    let err = open(Format::ImageFolder, &dir).unwrap_err();
    assert!(err.to_string().contains("not both"), "{err}");
    std::fs::create_dir_all(dir.join("train/empty")).unwrap();
    let err = open(Format::ImageFolder, &dir.join("train")).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}

#[test]
fn batches_from_files_and_memory() {
    let cub = open(Format::Cub, &dataset_dir("cub")).unwrap();
    let device = burn::tensor::Device::flex();
    let loader = BatchLoader::new(cub.split("train").unwrap(), Pipeline::cmbh_train(), 3).unwrap();
    let batch = loader.load(&[0, 3, 5], 0, &device).unwrap();
    assert_eq!(batch.images.dims(), [3, 3, 224, 224]);
    assert_eq!(
        batch.labels.into_data().iter::<i64>().collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    // Reproducible per (seed, epoch, sample), whatever the batch composition.
    let a = loader.load_host(&[3, 0], 1).unwrap();
    let b = loader.load_host(&[0, 3], 1).unwrap();
    let per = 3 * 224 * 224;
    assert_eq!(a.pixels[..per], b.pixels[per..]);
    assert_ne!(
        loader.load_host(&[3], 2).unwrap().pixels[..],
        a.pixels[..per]
    );
    // Mixed sizes without a fixed-size step are refused with both images named.
    let raw = Pipeline {
        name: "raw".into(),
        transforms: vec![],
        mean: [0.5; 3],
        std: [0.5; 3],
    };
    let mixed = BatchLoader::new(cub.split("train").unwrap(), raw, 0).unwrap();
    let err = mixed.load_host(&[0, 1], 0).unwrap_err();
    assert!(err.to_string().contains("different sizes"), "{err}");
    let c10 = open(Format::Cifar10, &dataset_dir("cifar10")).unwrap();
    let loader = BatchLoader::new(c10.split("train").unwrap(), Pipeline::cifar_train(), 0).unwrap();
    let order = SeededRng::new(1).permutation(8);
    assert_eq!(loader.load_host(&order, 0).unwrap().shape, [8, 3, 32, 32]);
}
