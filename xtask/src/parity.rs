//! `cargo xtask parity hrem`: training-step parity with the authors' released code.
//!
//! Writes a case (relata's batches, draws and configurations), runs
//! `crates/hrem/examples/authors_steps.py` on it with a checkout of CrossmodalGroup/HREM, then
//! trains the same steps in relata and prints the largest relative difference of every loss
//! term and parameter (docs/hrem.md, "Step parity"). `report.md` and `report.json` land
//! in the case directory.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use relata_hrem::step_parity::{compare, markdown, write_case};
use relata_train::Preset;

#[derive(Subcommand, Debug)]
pub enum ParityCommand {
    /// HREM: 20 optimiser steps of the full model and of the baseline against the released code.
    Hrem(HremParityArgs),
}

#[derive(Args, Debug)]
pub struct HremParityArgs {
    /// A checkout of github.com/CrossmodalGroup/HREM (fb854a9 or later).
    #[arg(long)]
    authors_code: Option<PathBuf>,
    /// Model sizes and batch size: smoke (the checked-in fixture's) or default.
    #[arg(long, default_value = "smoke")]
    preset: Preset,
    /// Optimiser steps.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Seed of the data, the batches and the draws.
    #[arg(long, default_value_t = relata_train::DEFAULT_SEED)]
    seed: u64,
    /// The case directory (default: runs/parity/hrem-<preset>-seed<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Skip the control run (the released code a second time with one CPU thread, to show how
    /// far it drifts from itself).
    #[arg(long)]
    no_control: bool,
    /// Compare an existing case whose reference/ is already written (no Python run).
    #[arg(long)]
    compare_only: bool,
    /// Where relata trains: flex (default), ndarray, wgpu, tch, ... (else `BURN_DEVICE`).
    #[arg(long)]
    device: Option<String>,
    /// The Python with torch and numpy.
    #[arg(long, env = "RELATA_PYTHON", default_value = "python3")]
    python: String,
}

pub fn run(cmd: ParityCommand) -> Result<()> {
    match cmd {
        ParityCommand::Hrem(args) => hrem(args),
    }
}

fn hrem(args: HremParityArgs) -> Result<()> {
    let root = crate::ci::workspace_root()?;
    let dir = args.out.clone().unwrap_or_else(|| {
        root.join("runs/parity")
            .join(format!("hrem-{}-seed{}", args.preset.name(), args.seed))
    });
    if !args.compare_only {
        let Some(authors) = &args.authors_code else {
            bail!(
                "--authors-code DIR is needed: a checkout of github.com/CrossmodalGroup/HREM \
                 (or --compare-only on a case whose reference/ exists)"
            );
        };
        if !authors.join("graph_lib.py").is_file() {
            bail!(
                "{}: no graph_lib.py; --authors-code takes a checkout of CrossmodalGroup/HREM",
                authors.display()
            );
        }
        write_case(&dir, args.preset, args.seed, args.steps)?;
        eprintln!(
            "case written to {}; running the released code",
            dir.display()
        );
        let script = root.join("crates/hrem/examples/authors_steps.py");
        let runs: &[&[&str]] = if args.no_control {
            &[&[]]
        } else {
            &[&[], &["threads=1", "out=control"]]
        };
        for extra in runs {
            let status = Command::new(&args.python)
                .arg(&script)
                .arg(&dir)
                .arg(authors)
                .args(*extra)
                .status()
                .with_context(|| format!("could not start `{}` (pass --python)", args.python))?;
            if !status.success() {
                bail!("{} failed ({status})", script.display());
            }
        }
    }
    let (choice, device) = relata_train::device::select_device(args.device.as_deref())?;
    eprintln!("relata trains the case on {choice}");
    let results = compare(&dir, &device)?;
    let table = markdown(&results);
    println!("{table}");
    std::fs::write(dir.join("report.md"), &table)?;
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_vec_pretty(&results)?,
    )?;
    Ok(())
}
