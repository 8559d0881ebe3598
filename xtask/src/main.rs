//! `cargo xtask`: relata's orchestration entry point (docs/design.md, Workspace).
//!
//! Subcommands are added only once they work end to end: `ci` (the full check CI runs),
//! `devices` (which backends this build has, and whether the chosen one comes up), `eval`
//! (the metrics contract (docs/design.md, Evaluation contract)), `bench` (side-by-side comparisons), `data` (inspect a
//! dataset on disk, export an embedded one) and `fixtures`.

mod backends;
mod bench;
mod bench_art;
mod bench_backbone;
mod bench_data;
mod bench_isl;
mod bench_ops;
mod ci;
mod data;
mod eval;
mod export;
mod features;
mod gpu_kit;
mod parity;
mod reproduce;
mod serve;
mod train_bench;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "cargo xtask", about = "relata orchestration", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Everything CI checks: fmt, clippy, workspace tests, backend smoke tests
    /// (wgpu on lavapipe, tch on libtorch CPU) and the vulkan compile check.
    Ci(ci::CiArgs),
    /// Side-by-side benchmarks against the reference implementations (FAISS, numpy, PyTorch).
    Bench(bench::BenchArgs),
    /// Evaluate saved outputs: `.npy` in, one JSON object out (docs/design.md, Evaluation contract).
    #[command(subcommand)]
    Eval(eval::EvalCommand),
    /// Inspect datasets on disk and export the embedded ones (`data inspect`, `data synth`).
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Extract ResNet features from `.npy` images with PyTorch weights (`.npy` out).
    Features(features::FeaturesArgs),
    /// Train and evaluate a method, write the results table (`reproduce cmbh`).
    #[command(subcommand)]
    Reproduce(reproduce::ReproduceCommand),
    /// A run's Hamming index as a FAISS `IndexBinaryFlat` file, or one read back
    /// (`export --index RUN/full-12bits/index.bin --format faiss --out codes.faiss`).
    Export(export::ExportArgs),
    /// Encode a folder of images with a trained run (`index cmbh --run RUN --images DIR --out
    /// INDEX`).
    #[command(subcommand)]
    Index(reproduce::IndexCommand),
    /// Query a trained run (`search cmbh --run RUN --image q.jpg`).
    #[command(subcommand)]
    Search(reproduce::SearchCommand),
    /// A trained run behind a web page: upload or pick a query image (CMBH) or type a caption
    /// (HREM) and see the top-k images (`serve --run RUN --index INDEX [--port 8080]`).
    Serve(serve::ServeArgs),
    /// Compare training steps with the authors' released code (`parity hrem --authors-code DIR`).
    #[command(subcommand)]
    Parity(parity::ParityCommand),
    /// Train each method a few steps on other backends from flex's start and compare every
    /// step's loss terms and one evaluation with flex's (`backends --devices wgpu,tch`).
    Backends(backends::BackendsArgs),
    /// Build the GPU kit: release binaries (wgpu, vulkan, tch against the target's torch),
    /// the PyTorch step references and `gpu-check.sh`, in target/gpu-kit.
    GpuKit(gpu_kit::GpuKitArgs),
    /// One method's training steps at the paper's shapes on synthetic data: steady-state steps
    /// per second on one device (`train-bench cmbh --device wgpu`).
    TrainBench(train_bench::TrainBenchArgs),
    /// Regenerate `fixtures/datasets/` (a tiny sample of every supported format).
    Fixtures {
        /// Output directory (default: `<workspace>/fixtures/datasets`).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// List the devices compiled into this build and bring one up
    /// (`--device`, else `BURN_DEVICE`, else `flex`).
    Devices {
        /// flex | ndarray | cpu | wgpu | wgpu-gl | vulkan | cuda[:N] | tch | tch-cuda[:N]
        #[arg(long)]
        device: Option<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // Training and benchmarks free and re-allocate megabytes per op: keep that memory in the
    // process (8–12% of a ResNet-18 step at 112², docs/notes/2026-11-performance-log.md).
    relata_backbone::retain_freed_memory();
    match cli.command {
        Command::Ci(args) => ci::run(args),
        Command::Eval(cmd) => eval::run(cmd),
        Command::Bench(args) => bench::run(args, &ci::workspace_root()?),
        Command::Devices { device } => devices(device.as_deref()),
        Command::Data(cmd) => data::run(cmd),
        Command::Features(args) => features::run(args),
        Command::Reproduce(cmd) => reproduce::run(cmd),
        Command::Export(args) => export::run(args),
        Command::Index(cmd) => reproduce::index(cmd),
        Command::Search(cmd) => reproduce::search(cmd),
        Command::Serve(args) => serve::run(args),
        Command::Parity(cmd) => parity::run(cmd),
        Command::Backends(args) => backends::run(args),
        Command::TrainBench(args) => train_bench::run(args),
        Command::GpuKit(args) => gpu_kit::run(args),
        Command::Fixtures { out } => {
            let out = match out {
                Some(o) => o,
                None => ci::workspace_root()?.join("fixtures/datasets"),
            };
            data::fixtures(&out)
        }
    }
}

fn devices(explicit: Option<&str>) -> Result<()> {
    use relata_train::device::{compiled_devices, select_device};
    let compiled: Vec<String> = compiled_devices().iter().map(|d| d.to_string()).collect();
    println!("compiled devices: {}", compiled.join(", "));
    let (choice, device) = select_device(explicit)?;
    // One real operation, so a broken driver shows up here rather than mid-training.
    let probe = burn::tensor::Tensor::<1>::from_floats([1.0, 2.0, 3.0], &device);
    let sum: f32 = probe.sum().into_scalar();
    anyhow::ensure!(
        (sum - 6.0).abs() < 1e-6,
        "device {choice} computed 1+2+3 = {sum}"
    );
    println!("selected device: {choice} ({device:?}): ok");
    Ok(())
}
