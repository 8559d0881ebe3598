//! Run-time device choice (docs/design.md, Backends).
//!
//! burn 0.22 erases the backend from the type system: the backend is whatever the [`Device`]
//! passed to `init` says, and Cargo features decide which constructors exist. relata never calls
//! `Device::default()`, because its pick silently changes when feature unification somewhere in
//! a user's dependency graph turns on another backend. Every device comes from
//! [`DeviceChoice`], parsed from `--device` (xtask) or the `BURN_DEVICE` environment variable,
//! and built through burn's explicit constructors.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};

use burn::tensor::Device;

/// The environment variable read by [`device_from_env`] when no `--device` is given.
pub const DEVICE_ENV: &str = "BURN_DEVICE";

/// A device a user can name on the command line or in `BURN_DEVICE`.
///
/// Accepted spellings: `flex`, `ndarray`, `cpu`, `wgpu`, `wgpu-gl`, `vulkan`, `cuda` (or
/// `cuda:N`), `tch` (libtorch CPU) and `tch-cuda` (or `tch-cuda:N`, libtorch CUDA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceChoice {
    /// burn's pure-Rust CPU backend: the default, always compiled unless the user opts out.
    Flex,
    /// burn-ndarray (deprecated upstream, kept for comparison).
    Ndarray,
    /// CubeCL's CPU runtime (its build script downloads LLVM: not buildable offline).
    Cpu,
    /// wgpu on whatever graphics API the runtime prefers (Vulkan / Metal / DX12), WGSL shaders.
    Wgpu,
    /// wgpu pinned to OpenGL (works on llvmpipe without Vulkan; slow).
    WgpuGl,
    /// wgpu pinned to Vulkan with CubeCL's SPIR-V compiler (crashes software lavapipe).
    Vulkan,
    /// CUDA through CubeCL, at a device index.
    Cuda(usize),
    /// libtorch on the CPU (`tch`; PyTorch 2.9.0).
    Tch,
    /// libtorch on a CUDA device (`tch` with a CUDA libtorch), at a device index.
    TchCuda(usize),
}

/// Why a device could not be chosen or brought up.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The name is not one relata knows.
    #[error(
        "unknown device `{name}`; known devices: {known}; compiled into this build: {compiled}"
    )]
    Unknown {
        /// What the user wrote.
        name: String,
        /// Every accepted spelling.
        known: String,
        /// The devices this binary can actually use.
        compiled: String,
    },
    /// The device is known but its backend feature was not enabled at build time.
    #[error(
        "device `{name}` is not compiled into this build: rebuild with the Cargo feature \
         `{feature}` (e.g. `cargo xtask --features {feature} ...` or `features = [\"{feature}\"]` \
         on the relata crate); compiled into this build: {compiled}"
    )]
    NotCompiled {
        /// The device asked for.
        name: String,
        /// The Cargo feature that would enable it.
        feature: &'static str,
        /// The devices this binary can actually use.
        compiled: String,
    },
    /// The backend is compiled in but the runtime refused to start (no adapter, no driver...).
    #[error("device `{name}` could not be initialised: {message}")]
    Init {
        /// The device asked for.
        name: String,
        /// What the runtime said.
        message: String,
    },
}

impl DeviceChoice {
    /// One representative of every kind, in the order they are listed to users.
    pub const ALL: [DeviceChoice; 9] = [
        DeviceChoice::Flex,
        DeviceChoice::Ndarray,
        DeviceChoice::Cpu,
        DeviceChoice::Wgpu,
        DeviceChoice::WgpuGl,
        DeviceChoice::Vulkan,
        DeviceChoice::Cuda(0),
        DeviceChoice::Tch,
        DeviceChoice::TchCuda(0),
    ];

    /// The Cargo feature (on every relata crate) that compiles this device in.
    pub fn feature(self) -> &'static str {
        match self {
            DeviceChoice::Flex => "flex",
            DeviceChoice::Ndarray => "ndarray",
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Wgpu | DeviceChoice::WgpuGl => "wgpu",
            DeviceChoice::Vulkan => "vulkan",
            DeviceChoice::Cuda(_) => "cuda",
            DeviceChoice::Tch | DeviceChoice::TchCuda(_) => "tch",
        }
    }

    /// Whether this binary was built with the backend behind this device.
    pub fn is_compiled(self) -> bool {
        match self {
            DeviceChoice::Flex => cfg!(feature = "flex"),
            DeviceChoice::Ndarray => cfg!(feature = "ndarray"),
            DeviceChoice::Cpu => cfg!(feature = "cpu"),
            DeviceChoice::Wgpu | DeviceChoice::WgpuGl => cfg!(feature = "wgpu"),
            DeviceChoice::Vulkan => cfg!(feature = "vulkan"),
            DeviceChoice::Cuda(_) => cfg!(feature = "cuda"),
            DeviceChoice::Tch | DeviceChoice::TchCuda(_) => cfg!(feature = "tch"),
        }
    }

    /// Whether the device computes on the host CPU (used to pick thread counts and batch sizes).
    pub fn is_host_cpu(self) -> bool {
        matches!(
            self,
            DeviceChoice::Flex | DeviceChoice::Ndarray | DeviceChoice::Cpu | DeviceChoice::Tch
        )
    }

    /// Brings the device up through burn's explicit constructors.
    ///
    /// wgpu devices are initialised eagerly (and once per process), so that a missing adapter
    /// or driver is an error here rather than a panic on the first tensor operation.
    pub fn device(self) -> Result<Device, DeviceError> {
        if !self.is_compiled() {
            return Err(DeviceError::NotCompiled {
                name: self.to_string(),
                feature: self.feature(),
                compiled: compiled_list(),
            });
        }
        static CACHE: OnceLock<Mutex<HashMap<DeviceChoice, Result<Device, String>>>> =
            OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        let mut cache = cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let built = cache.entry(self).or_insert_with(|| construct(self)).clone();
        built.map_err(|message| DeviceError::Init {
            name: self.to_string(),
            message,
        })
    }
}

/// Builds a device whose backend is known to be compiled in. Each arm only exists when its
/// feature is on; the `unreachable` fallbacks are guarded by [`DeviceChoice::is_compiled`].
#[allow(unreachable_code, unused_variables)]
fn construct(choice: DeviceChoice) -> Result<Device, String> {
    match choice {
        DeviceChoice::Flex => {
            #[cfg(feature = "flex")]
            return Ok(Device::flex());
        }
        DeviceChoice::Ndarray => {
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            return Ok(Device::ndarray());
        }
        DeviceChoice::Cpu => {
            #[cfg(feature = "cpu")]
            return Ok(Device::cpu());
        }
        DeviceChoice::Wgpu => {
            #[cfg(feature = "wgpu")]
            return wgpu_device(burn::tensor::wgpu::WgpuBackend::Auto);
        }
        DeviceChoice::WgpuGl => {
            #[cfg(feature = "wgpu")]
            return wgpu_device(burn::tensor::wgpu::WgpuBackend::Gl);
        }
        DeviceChoice::Vulkan => {
            #[cfg(feature = "vulkan")]
            return wgpu_device(burn::tensor::wgpu::WgpuBackend::Vulkan);
        }
        DeviceChoice::Cuda(index) => {
            #[cfg(feature = "cuda")]
            return Ok(Device::cuda(index));
        }
        DeviceChoice::Tch => {
            #[cfg(feature = "tch")]
            #[allow(deprecated)]
            return Ok(Device::libtorch());
        }
        DeviceChoice::TchCuda(index) => {
            #[cfg(feature = "tch")]
            #[allow(deprecated)]
            return Ok(Device::libtorch_cuda(index));
        }
    }
    Err(format!("backend for `{choice}` is not compiled in"))
}

#[cfg(feature = "wgpu")]
fn wgpu_device(api: burn::tensor::wgpu::WgpuBackend) -> Result<Device, String> {
    Device::wgpu_options()
        .graphics_api(api)
        .init()
        .map_err(|e| {
            format!(
                "{e} (on a machine without a GPU, install Mesa's software drivers: Debian \
                 `mesa-vulkan-drivers libvulkan1` for `wgpu`, `libegl1 libegl-mesa0 \
                 libgl1-mesa-dri` for `wgpu-gl`)"
            )
        })
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Flex => f.write_str("flex"),
            DeviceChoice::Ndarray => f.write_str("ndarray"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Wgpu => f.write_str("wgpu"),
            DeviceChoice::WgpuGl => f.write_str("wgpu-gl"),
            DeviceChoice::Vulkan => f.write_str("vulkan"),
            DeviceChoice::Cuda(0) => f.write_str("cuda"),
            DeviceChoice::Cuda(i) => write!(f, "cuda:{i}"),
            DeviceChoice::Tch => f.write_str("tch"),
            DeviceChoice::TchCuda(0) => f.write_str("tch-cuda"),
            DeviceChoice::TchCuda(i) => write!(f, "tch-cuda:{i}"),
        }
    }
}

impl FromStr for DeviceChoice {
    type Err = DeviceError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let name = raw.trim().to_ascii_lowercase();
        let (base, index) = match name.split_once(':') {
            Some((base, idx)) => match idx.parse::<usize>() {
                Ok(i) => (base, Some(i)),
                Err(_) => return Err(unknown(raw)),
            },
            None => (name.as_str(), None),
        };
        let choice = match (base, index) {
            ("flex", None) => DeviceChoice::Flex,
            ("ndarray", None) => DeviceChoice::Ndarray,
            ("cpu", None) => DeviceChoice::Cpu,
            ("wgpu", None) => DeviceChoice::Wgpu,
            ("wgpu-gl", None) => DeviceChoice::WgpuGl,
            ("vulkan", None) => DeviceChoice::Vulkan,
            ("cuda", i) => DeviceChoice::Cuda(i.unwrap_or(0)),
            ("tch", None) => DeviceChoice::Tch,
            ("tch-cuda", i) => DeviceChoice::TchCuda(i.unwrap_or(0)),
            _ => return Err(unknown(raw)),
        };
        Ok(choice)
    }
}

fn unknown(raw: &str) -> DeviceError {
    DeviceError::Unknown {
        name: raw.to_string(),
        known: "flex, ndarray, cpu, wgpu, wgpu-gl, vulkan, cuda[:N], tch, tch-cuda[:N]".into(),
        compiled: compiled_list(),
    }
}

/// The devices this binary can use, in listing order.
pub fn compiled_devices() -> Vec<DeviceChoice> {
    DeviceChoice::ALL
        .into_iter()
        .filter(|d| d.is_compiled())
        .collect()
}

fn compiled_list() -> String {
    let names: Vec<String> = compiled_devices().iter().map(|d| d.to_string()).collect();
    if names.is_empty() {
        "none (enable one of the features flex, ndarray, cpu, wgpu, vulkan, cuda, tch)".into()
    } else {
        names.join(", ")
    }
}

/// Resolves the device to use: the explicit name if given (`--device`), else `BURN_DEVICE`,
/// else `flex`. Returns the parsed choice so callers can record it (e.g. in `metrics.json`).
pub fn resolve_choice(explicit: Option<&str>) -> Result<DeviceChoice, DeviceError> {
    match explicit {
        Some(name) => name.parse(),
        None => match std::env::var(DEVICE_ENV) {
            Ok(name) if !name.trim().is_empty() => name.parse(),
            _ => Ok(DeviceChoice::Flex),
        },
    }
}

/// [`resolve_choice`] followed by [`DeviceChoice::device`].
pub fn select_device(explicit: Option<&str>) -> Result<(DeviceChoice, Device), DeviceError> {
    let choice = resolve_choice(explicit)?;
    Ok((choice, choice.device()?))
}

/// The device named by `BURN_DEVICE`, else `flex`.
pub fn device_from_env() -> Result<Device, DeviceError> {
    select_device(None).map(|(_, d)| d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for choice in DeviceChoice::ALL
            .into_iter()
            .chain([DeviceChoice::Cuda(3), DeviceChoice::TchCuda(1)])
        {
            let parsed: DeviceChoice = choice.to_string().parse().unwrap();
            assert_eq!(parsed, choice);
        }
        assert_eq!(
            "CUDA:2".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(2)
        );
    }

    #[test]
    fn unknown_name_lists_known_and_compiled() {
        let err = "metal".parse::<DeviceChoice>().unwrap_err().to_string();
        assert!(err.contains("unknown device `metal`"), "{err}");
        assert!(err.contains("wgpu-gl"), "{err}");
        assert!(err.contains("compiled into this build: "), "{err}");
        assert!("wgpu:x".parse::<DeviceChoice>().is_err());
        assert!("flex:1".parse::<DeviceChoice>().is_err());
    }

    #[test]
    fn not_compiled_device_names_the_feature() {
        // `cpu` and `cuda` can never be built on relata's CI machines.
        if let Some(missing) = DeviceChoice::ALL.into_iter().find(|d| !d.is_compiled()) {
            let err = missing.device().unwrap_err().to_string();
            assert!(err.contains("not compiled into this build"), "{err}");
            assert!(err.contains(&format!("`{}`", missing.feature())), "{err}");
        }
    }

    #[cfg(feature = "flex")]
    #[test]
    fn default_is_flex() {
        // Only meaningful when the caller does not override it through the environment.
        if std::env::var(DEVICE_ENV).is_err() {
            assert_eq!(resolve_choice(None).unwrap(), DeviceChoice::Flex);
        }
        assert_eq!(resolve_choice(Some("flex")).unwrap(), DeviceChoice::Flex);
        let (choice, device) = select_device(Some("flex")).unwrap();
        assert_eq!(choice, DeviceChoice::Flex);
        let t = burn::tensor::Tensor::<1>::from_floats([1.0, 2.0], &device);
        assert_eq!(t.sum().into_scalar::<f32>(), 3.0);
    }
}
