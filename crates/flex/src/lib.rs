//! relata-flex: relata's CPU kernels for burn's `flex` backend, and the ResNet ops that use
//! them.
//!
//! - [`ops`]: convolution, batch normalisation (with PyTorch's running-variance update), max
//!   pooling and ReLU on burn's modules — relata's kernels on `flex`, burn's ops on every other
//!   backend, so models call them unconditionally;
//! - [`paths`]: which instruction-set paths the kernels take (AVX-512 or portable), and a
//!   switch to force the portable ones;
//! - [`retain_freed_memory`]: the allocator setting CPU training wants, for an application to
//!   make at start-up.
//!
//! How the kernels plug into burn, which paths exist, when each is taken and how each is tested:
//! `ARCHITECTURE.md` beside this crate's `Cargo.toml`.

#[cfg(feature = "flex")]
mod kernels;
mod memory;
pub mod ops;
pub mod paths;

pub use memory::retain_freed_memory;
pub use ops::PathDeviation;
