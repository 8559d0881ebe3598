//! `cargo xtask gpu-kit`: what a GPU machine without Rust or network needs to train relata on
//! its GPU and compare it with PyTorch there, in one folder small enough to carry (docs/
//! backends.md, "GPU kit").
//!
//! - `relata-wgpu.xz`, `relata-vulkan.xz`: release `xtask` binaries with burn's `wgpu` (WGSL
//!   shaders) and `vulkan` (CubeCL's SPIR-V) backends, stripped and xz-compressed;
//! - `relata-tch.xz`: the same with `tch`, built against the target's PyTorch (2.11 by default,
//!   from `--torch-python`) and linked dynamically: on the GPU machine its own torch's `lib/`
//!   on `LD_LIBRARY_PATH` makes it run on `tch-cuda`;
//! - `train_reference.py` (the PyTorch steps), `gpu-check.sh` (finds the driver, runs every
//!   method's `train-bench` on each GPU backend and the reference, samples `nvidia-smi` for
//!   peak memory, prints one JSON object with the ratios) and `kit.json` (what was built).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KitBuild {
    Wgpu,
    Vulkan,
    Tch,
}

impl KitBuild {
    fn name(self) -> &'static str {
        match self {
            KitBuild::Wgpu => "wgpu",
            KitBuild::Vulkan => "vulkan",
            KitBuild::Tch => "tch",
        }
    }
}

#[derive(Args, Debug)]
pub struct GpuKitArgs {
    /// The kit folder (default: target/gpu-kit, ignored by git).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Python whose torch the `tch` build links against: the GPU machines' version.
    #[arg(long, env = "RELATA_KIT_PYTHON", default_value = "python3")]
    torch_python: String,
    /// That torch's version (the GPU machines have 2.11.0).
    #[arg(long, default_value = "2.11.0")]
    torch_version: String,
    /// Which binaries to build.
    #[arg(long, value_delimiter = ',', default_value = "wgpu,vulkan,tch")]
    builds: Vec<KitBuild>,
    /// The most the kit may hold, in MiB (what a carried tree may hold, less the repository).
    #[arg(long, default_value_t = 48)]
    max_mib: u64,
}

pub fn run(args: GpuKitArgs) -> Result<()> {
    let root = crate::ci::workspace_root()?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| root.join("target/gpu-kit"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let mut built = Vec::new();
    for &build in &args.builds {
        let t0 = Instant::now();
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        let mut torch_lib = None;
        if build == KitBuild::Tch {
            torch_lib = Some(
                crate::ci::libtorch_from(&mut cargo, &args.torch_python, &args.torch_version)
                    .context("the tch build links against the target machines' torch")?,
            );
        }
        cargo
            .args(["build", "--release", "-p", "xtask", "--no-default-features"])
            .arg("--features")
            .arg(format!("flex,{}", build.name()))
            .current_dir(&root);
        eprintln!("==> {}: {cargo:?}", build.name());
        let status = cargo.status().context("could not start cargo")?;
        if !status.success() {
            bail!(
                "the {} build failed ({status}); docs/backends.md says what is known to fail",
                build.name()
            );
        }
        let binary = out.join(format!("relata-{}", build.name()));
        std::fs::copy(target.join("release/xtask"), &binary)?;
        run_tool(Command::new("strip").arg(&binary))?;
        let stripped = std::fs::metadata(&binary)?.len();
        let xz = binary.with_extension("xz");
        let _ = std::fs::remove_file(&xz);
        run_tool(Command::new("xz").args(["-9", "-T0"]).arg(&binary))?;
        // xz writes `relata-wgpu.xz` from `relata-wgpu`.
        let packed = std::fs::metadata(&xz)
            .with_context(|| format!("{} was not written", xz.display()))?
            .len();
        if let Some(lib) = &torch_lib {
            check_dynamic_torch(&xz, lib)?;
        }
        eprintln!(
            "<== {}: {:.1} MiB stripped, {:.1} MiB packed, {:.0} s",
            build.name(),
            mib(stripped),
            mib(packed),
            t0.elapsed().as_secs_f64()
        );
        built.push(json!({
            "build": build.name(),
            "file": xz.file_name().map(|f| f.to_string_lossy().into_owned()),
            "stripped_mib": mib(stripped),
            "packed_mib": mib(packed),
            "torch": (build == KitBuild::Tch).then_some(&args.torch_version),
        }));
    }
    std::fs::copy(
        root.join("benches/python/train_reference.py"),
        out.join("train_reference.py"),
    )?;
    let script = out.join("gpu-check.sh");
    std::fs::copy(root.join("xtask/gpu-kit/gpu-check.sh"), &script)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    }
    let commit = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(&root)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let manifest = json!({ "commit": commit, "builds": built });
    std::fs::write(
        out.join("kit.json"),
        serde_json::to_string_pretty(&manifest)?,
    )?;
    let total = folder_size(&out)?;
    eprintln!("kit: {} ({:.1} MiB)", out.display(), mib(total));
    if total > args.max_mib << 20 {
        bail!(
            "the kit holds {:.1} MiB, more than --max-mib {}: leave a build out (--builds) or \
             raise the limit if the carried tree allows",
            mib(total),
            args.max_mib
        );
    }
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}

fn run_tool(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn folder_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let meta = entry?.metadata()?;
        if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

/// The tch binary must load libtorch from the machine's torch, not carry it: its dynamic
/// section names `libtorch_cpu.so` and holds no path into this machine's venv.
fn check_dynamic_torch(xz: &Path, lib: &str) -> Result<()> {
    let unpacked = tempfile::NamedTempFile::new()?;
    let status = Command::new("xz")
        .args(["-dc"])
        .arg(xz)
        .stdout(unpacked.reopen()?)
        .status()?;
    if !status.success() {
        bail!("could not unpack {}", xz.display());
    }
    let out = Command::new("readelf")
        .args(["-d"])
        .arg(unpacked.path())
        .output()
        .context("readelf (binutils) reads the tch binary's dynamic section")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !text.contains("libtorch_cpu.so") {
        bail!("the tch binary does not link libtorch_cpu.so dynamically:\n{text}");
    }
    if text.contains(lib) {
        bail!("the tch binary carries a path into this machine's torch ({lib}) in its RUNPATH");
    }
    Ok(())
}
