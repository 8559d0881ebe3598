//! relata-train: the one training scaffold shared by relata's four methods (design §5).
//!
//! For now it holds the run-time device choice ([`device`]); the training loop, schedules,
//! checkpoints and reports land with the training-scaffold issue.

pub mod device;

pub use device::{DeviceChoice, DeviceError, compiled_devices, select_device};
