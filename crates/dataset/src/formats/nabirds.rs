//! NABirds: the CUB-style id lists, with the 555 leaf classes that have images remapped to
//! `0..555` (see [`super::cub::read_id_lists`]).

use std::path::Path;

use super::Format;
use super::cub::read_id_lists;
use crate::error::DatasetError;
use crate::source::{ImageDataset, ReadOptions};

pub(crate) fn open(root: &Path, options: ReadOptions) -> Result<ImageDataset, DatasetError> {
    let root = super::archive_root(root, "nabirds", "images.txt");
    read_id_lists(&root, Format::Nabirds, options)
}
