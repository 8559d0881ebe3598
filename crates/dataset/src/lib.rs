//! relata-dataset
