//! `cargo xtask ci`: the checks `.ci/run` performs after installing prerequisites.
//!
//! Order matters for a cold machine: the workspace test build (flex) comes first so that its
//! artifacts are reused by clippy's dependency checks as far as cargo allows; the extra backend
//! builds compile only `relata-train` (the smoke test's crate) so a backend costs one burn build,
//! not a workspace build. `wgpu` and `tch` share one build (`--features wgpu,tch`): the smoke
//! test then runs on flex, wgpu and tch from the same binary. `vulkan` is compile-checked in its
//! own feature set and never linked into the wgpu test binary, because with `vulkan` compiled in
//! cubecl switches to its SPIR-V compiler and software lavapipe segfaults.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;

#[derive(Args, Debug)]
pub struct CiArgs {
    /// Skip the wgpu (lavapipe) smoke test.
    #[arg(long)]
    skip_wgpu: bool,
    /// Skip the tch (libtorch CPU) smoke test.
    #[arg(long)]
    skip_tch: bool,
    /// Skip the vulkan compile check.
    #[arg(long)]
    skip_vulkan: bool,
    /// Python interpreter with torch==2.9.0 installed (for the tch build).
    #[arg(long, env = "RELATA_PYTHON", default_value = "python3")]
    python: String,
}

struct Step {
    name: String,
    seconds: f64,
}

pub fn run(args: CiArgs) -> Result<()> {
    let root = workspace_root()?;
    let mut steps: Vec<Step> = Vec::new();
    let mut step = |name: &str, cmd: &mut Command| -> Result<()> {
        eprintln!("\n==> {name}: {cmd:?}");
        let start = Instant::now();
        let status = cmd
            .current_dir(&root)
            .status()
            .with_context(|| format!("could not start `{name}`"))?;
        let seconds = start.elapsed().as_secs_f64();
        eprintln!("<== {name}: {status} in {seconds:.0} s");
        if !status.success() {
            bail!("ci step `{name}` failed ({status})");
        }
        steps.push(Step {
            name: name.to_string(),
            seconds,
        });
        Ok(())
    };

    step("fmt", cargo().args(["fmt", "--all", "--check"]))?;
    step("test (flex)", cargo().args(["test", "--workspace"]))?;
    // Lints with warnings as errors, over `targets`.
    let clippy = |targets: &[&str]| {
        let mut c = cargo();
        c.arg("clippy").args(targets).args(["--", "-D", "warnings"]);
        c
    };
    step("clippy", &mut clippy(&["--workspace", "--all-targets"]))?;

    // The kernels crate as other architectures build it (no x86 kernels: `cfg`-gated code
    // that slipped through fails here), and its tests on the portable paths this machine
    // would otherwise skip for its AVX-512 ones.
    step(
        "relata-flex without x86 kernels",
        &mut clippy(&[
            "-p",
            "relata-flex",
            "--no-default-features",
            "--features",
            "flex",
            "--all-targets",
        ]),
    )?;
    step(
        "relata-flex tests, portable paths",
        cargo()
            .args(["test", "-p", "relata-flex", "--no-default-features"])
            .args(["--features", "flex"]),
    )?;

    // The libraries' documentation, with its intra-doc links resolved (a broken or private
    // link fails). Not xtask's: its doc comments are clap's help text, where `cuda[:N]` is not
    // a link.
    step(
        "doc",
        cargo()
            .args(["doc", "--workspace", "--exclude", "xtask", "--no-deps"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;

    let mut features = Vec::new();
    let mut devices = vec!["flex"];
    if !args.skip_wgpu {
        features.push("wgpu");
        devices.push("wgpu");
    }
    let mut smoke = cargo();
    if !args.skip_tch {
        features.push("tch");
        devices.push("tch");
        configure_libtorch(&mut smoke, &args.python)?;
    }
    if !features.is_empty() {
        private_runtime_dir(&mut smoke)?;
        let features = features.join(",");
        smoke
            .args(["test", "--profile", "smoke", "-p", "relata-train"])
            .args(["--features", &features])
            .args(["--test", "backend_smoke", "--", "--nocapture"])
            .env("RELATA_SMOKE_DEVICES", devices.join(","));
        step(&format!("backend smoke ({features})"), &mut smoke)?;

        // Two methods end to end on the same backends against flex, step by step (the other
        // three: `cargo xtask backends`, docs/backends.md). It rebuilds xtask in the smoke
        // test's profile with the same burn features, so burn is not built again.
        step(
            &format!("backends: cmbh, isl on {features}"),
            cargo()
                .args(["xtask", "backends", "--methods", "cmbh,isl", "--devices"])
                .arg(devices[1..].join(","))
                .arg("--python")
                .arg(&args.python),
        )?;
    }
    // The GPU kit's parts that run anywhere: each method's training benchmark at the tiny size
    // on flex, the PyTorch references on the CPU, and the check script's syntax. (The release
    // builds themselves take most of an hour here: `cargo xtask gpu-kit`, docs/backends.md.)
    const METHODS: [&str; 4] = ["cmbh", "hrem", "isl", "csrms"];
    for method in METHODS {
        step(
            &format!("train-bench {method} (tiny, flex)"),
            cargo().args([
                "xtask",
                "train-bench",
                method,
                "--size",
                "tiny",
                "--steps",
                "2",
            ]),
        )?;
    }
    if !args.skip_tch {
        wait_for_python_setup()?;
        for method in METHODS {
            step(
                &format!("train_reference.py {method} (tiny, cpu)"),
                Command::new(&args.python)
                    .arg("benches/python/train_reference.py")
                    .args([method, "--size", "tiny", "--device", "cpu", "--steps", "2"]),
            )?;
        }
    }
    step(
        "gpu-check.sh syntax",
        Command::new("bash").args(["-n", "xtask/gpu-kit/gpu-check.sh"]),
    )?;
    if !args.skip_vulkan {
        step(
            "vulkan compile check",
            cargo().args([
                "check",
                "-p",
                "relata-train",
                "--features",
                "vulkan",
                "--all-targets",
            ]),
        )?;
    }

    eprintln!("\nci summary:");
    let total: f64 = steps.iter().map(|s| s.seconds).sum();
    for s in &steps {
        eprintln!("  {:<32} {:>6.0} s", s.name, s.seconds);
    }
    eprintln!("  {:<32} {:>6.0} s", "total", total);
    Ok(())
}

/// Mesa's window-system probing prints "XDG_RUNTIME_DIR is invalid" errors on headless
/// machines; a private runtime dir keeps the logs to real errors.
pub(crate) fn private_runtime_dir(cmd: &mut Command) -> Result<()> {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        let dir = std::env::temp_dir().join(format!("relata-xdg-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        cmd.env("XDG_RUNTIME_DIR", dir);
    }
    Ok(())
}

/// `.ci/run` installs the torch venv in the background while the first builds run and names a
/// marker file in `RELATA_PYTHON_READY`: `<marker>` appears on success, `<marker>.failed` (with
/// the install log beside it) on failure.
fn wait_for_python_setup() -> Result<()> {
    let Ok(marker) = std::env::var("RELATA_PYTHON_READY") else {
        return Ok(());
    };
    let ok = PathBuf::from(&marker);
    let failed = PathBuf::from(format!("{marker}.failed"));
    let start = Instant::now();
    let mut said = false;
    while !ok.exists() {
        if failed.exists() {
            let log = std::fs::read_to_string(&failed).unwrap_or_default();
            bail!("installing torch==2.9.0 failed:\n{log}");
        }
        if start.elapsed().as_secs() > 45 * 60 {
            bail!("gave up waiting 45 min for the torch venv ({marker})");
        }
        if !said {
            eprintln!("waiting for the background torch==2.9.0 install ({marker}) ...");
            said = true;
        }
        std::thread::sleep(std::time::Duration::from_secs(5));
    }
    if said {
        eprintln!(
            "torch venv ready after {:.0} s of waiting",
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// The workspace root: the parent of xtask's manifest directory.
///
/// `cargo xtask` (`cargo run -p xtask`) sets `CARGO_MANIFEST_DIR` when it runs the binary, and
/// that value is preferred over the one compiled in: clones that share one target directory
/// share one xtask binary (cargo keys path packages by their path inside the workspace), so the
/// compiled-in path may name another clone — or one that no longer exists.
pub fn workspace_root() -> Result<PathBuf> {
    workspace_root_from(std::env::var_os("CARGO_MANIFEST_DIR"))
}

fn workspace_root_from(runtime_manifest_dir: Option<std::ffi::OsString>) -> Result<PathBuf> {
    let manifest = runtime_manifest_dir
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest
        .parent()
        .map(PathBuf::from)
        .context("xtask must live one level below the workspace root")
}

/// `tch` links against the libtorch shipped inside the `torch==2.9.0` wheel
/// (`LIBTORCH_USE_PYTORCH=1`); the test binary finds it through `LD_LIBRARY_PATH`.
pub(crate) fn configure_libtorch(cmd: &mut Command, python: &str) -> Result<()> {
    wait_for_python_setup()?;
    libtorch_from(cmd, python, TCH_TORCH)?;
    Ok(())
}

/// The PyTorch version `tch` 0.22 is written against.
pub(crate) const TCH_TORCH: &str = "2.9.0";

/// Points a `tch` build (and its run) at the libtorch inside `python`'s torch, which must be
/// version `want`; returns its `lib` directory. For any version but [`TCH_TORCH`] torch-sys's
/// version check is bypassed (`LIBTORCH_BYPASS_VERSION_CHECK=1`).
pub(crate) fn libtorch_from(cmd: &mut Command, python: &str, want: &str) -> Result<String> {
    let probe = Command::new(python)
        .args([
            "-c",
            "import os, sys, torch; print(torch.__version__); \
             print(os.path.join(os.path.dirname(torch.__file__), 'lib')); \
             print(os.path.dirname(sys.executable))",
        ])
        .output()
        .with_context(|| format!("could not run `{python}`; pass --python or set RELATA_PYTHON"))?;
    if !probe.status.success() {
        bail!(
            "`{python}` cannot import torch: {}\nThis build needs PyTorch {want}: `python3 -m venv \
             VENV && VENV/bin/pip install torch=={want}`, then pass VENV/bin/python (for the \
             smoke test RELATA_PYTHON, or run `bash .ci/run`, which does this; or --skip-tch)",
            String::from_utf8_lossy(&probe.stderr).trim()
        );
    }
    let out = String::from_utf8_lossy(&probe.stdout);
    let mut lines = out.lines();
    let version = lines.next().unwrap_or_default().trim().to_string();
    let lib_dir = lines.next().unwrap_or_default().trim().to_string();
    let bin_dir = lines.next().unwrap_or_default().trim().to_string();
    if !version.starts_with(want) {
        bail!("`{python}` has torch {version}; this build needs torch {want}");
    }
    let ld = match std::env::var("LD_LIBRARY_PATH") {
        Ok(old) if !old.is_empty() => format!("{lib_dir}:{old}"),
        _ => lib_dir.clone(),
    };
    // torch-sys's build script runs `python3` (or `python` inside a venv) from PATH: put the
    // chosen interpreter's directory first.
    let path = match std::env::var("PATH") {
        Ok(old) if !old.is_empty() => format!("{bin_dir}:{old}"),
        _ => bin_dir,
    };
    cmd.env("LIBTORCH_USE_PYTORCH", "1")
        .env("PATH", path)
        .env("LD_LIBRARY_PATH", ld);
    if want != TCH_TORCH {
        cmd.env("LIBTORCH_BYPASS_VERSION_CHECK", "1");
    }
    Ok(lib_dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn workspace_root_follows_the_running_cargo_over_the_compiled_in_path() {
        let other_clone = workspace_root_from(Some("/elsewhere/clone/xtask".into())).unwrap();
        assert_eq!(other_clone, PathBuf::from("/elsewhere/clone"));
        let compiled_in = workspace_root_from(None).unwrap();
        assert_eq!(
            compiled_in,
            Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
        );
    }
}
