//! `cargo xtask bench isl`: the host side of ISL's three kinds of step at CIFAR scale
//! (N = 50,000 instances, batch 128, 128-d, 4,096 negative draws, k = 10), timed apart from the
//! tensor work, before and after the host work moved to the device.
//!
//! "Before" re-runs the host algorithms the steps used to run — a dense `b × N` membership mask,
//! the 4,096-candidate hardest-negative scan on the CPU, the bank copied to the host and N
//! entries sorted per anchor — on the same inputs; "after" times what the host still does
//! (padded member ids; reading back and deciding b·(k+1) neighbours) and, separately, the whole
//! call with its tensor work on the bench's device (flex here: the CPU stands in for the GPU).

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use burn::tensor::{Device, Tensor, TensorData};
use relata_isl::gan::hardest_negatives;
use relata_isl::host_reference;
use relata_isl::loss::{Members, hard_positives_with};
use relata_isl::mining::{decide, proxy_neighbours};
use relata_isl::{GanConfig, MemoryBank, MiningConfig, PositiveSets};
use relata_train::SeededRng;
use serde_json::json;

const BATCH: usize = 128;
const DIM: usize = 128;
const DRAWS: usize = 4096;

/// Best wall time of `reps` calls, in milliseconds.
fn best_ms<T>(reps: usize, mut f: impl FnMut() -> T) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        std::hint::black_box(f());
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
    }
    best
}

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().expect("f32 tensor")
}

pub fn run(quick: bool, json_out: &Path) -> Result<()> {
    let n = if quick { 10_000 } else { 50_000 };
    let reps = if quick { 3 } else { 10 };
    let device = Device::flex();
    device.seed(1);
    let mut rng = SeededRng::new(1);
    let memory = MemoryBank::new(n, DIM, 0.1, 0.5, &mut rng, &device);
    let memory = MemoryBank::from_values(
        host(relata_isl::memory::l2_normalize(memory.values())),
        DIM,
        0.1,
        0.5,
        &device,
    )?;
    // Sets as after three rounds of the quota (1.5 mined positives per instance on average).
    let mut sets = PositiveSets::identity(n);
    for _ in 0..(n * 3 / 4) {
        sets.add_pair(rng.below(n), rng.below(n));
    }
    let batch: Vec<usize> = rng.permutation(n)[..BATCH].to_vec();
    let anchors_host = host(memory.rows(&batch));
    let anchors =
        Tensor::<2>::from_data(TensorData::new(anchors_host.clone(), [BATCH, DIM]), &device);
    let gan = GanConfig::new().init(&device);
    let mining = MiningConfig::new().with_threshold(0.0);
    let memory_host = memory.to_vec()?;
    eprintln!("bench isl: N = {n}, batch {BATCH}, {reps} repetitions, best time");

    // Backbone step: the membership the L1 term reads.
    let backbone_before = best_ms(reps, || {
        Tensor::<2>::from_data(TensorData::new(sets.mask(&batch), [BATCH, n]), &device)
    });
    let backbone_after = best_ms(reps, || Members::of(&sets, &batch, &device));
    // Hard positives (unchanged): the members' memory rows read back, the least similar picked.
    let hard_positives = best_ms(reps, || {
        let mut ids: Vec<usize> = batch
            .iter()
            .flat_map(|&i| sets.get(i).iter().copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let rows = host(memory.rows(&ids));
        let at: std::collections::HashMap<usize, usize> =
            ids.iter().enumerate().map(|(k, &i)| (i, k)).collect();
        hard_positives_with(&batch, &sets, |i| &rows[at[&i] * DIM..(at[&i] + 1) * DIM])
    });

    // GAN step: the hardest negatives.
    let mut scan_rng = SeededRng::new(2);
    let gan_before = best_ms(reps, || {
        host_reference::hardest_negatives(
            &anchors_host,
            &batch,
            &sets,
            &memory_host,
            DIM,
            DRAWS,
            &mut scan_rng,
        )
    });
    let gan_after_host = backbone_after; // the padded member ids are all the host builds
    let gan_after_total = best_ms(reps, || {
        let (ids, _) = hardest_negatives(anchors.clone(), &batch, &sets, &memory, DRAWS);
        ids.into_data()
    });

    // Mining batch.
    let mining_before = best_ms(reps, || {
        std::hint::black_box(memory.to_vec().expect("bank"));
        let cos = host(anchors.clone().matmul(memory.values().transpose()));
        (0..BATCH)
            .map(|row| host_reference::top_neighbours(&cos[row * n..(row + 1) * n], batch[row], 10))
            .collect::<Vec<_>>()
    }) + gan_before;
    let found = proxy_neighbours(&gan, anchors.clone(), &batch, &sets, &memory, &mining)?;
    let mining_after_host = best_ms(reps, || decide(&found, &batch, &mining)) + backbone_after;
    let mining_after_total = best_ms(reps, || {
        let found = proxy_neighbours(&gan, anchors.clone(), &batch, &sets, &memory, &mining)
            .expect("mining");
        decide(&found, &batch, &mining)
    });

    let rows = [
        (
            "backbone step (L1 membership)",
            backbone_before,
            backbone_after,
            backbone_after,
        ),
        (
            "backbone step (hard positives)",
            hard_positives,
            hard_positives,
            hard_positives,
        ),
        (
            "GAN step (hardest negatives)",
            gan_before,
            gan_after_host,
            gan_after_total,
        ),
        (
            "mining batch",
            mining_before,
            mining_after_host,
            mining_after_total,
        ),
    ];
    println!(
        "\n| step, N = {n}, batch {BATCH} | host before (ms) | host after (ms) | after, with tensor work on flex (ms) |"
    );
    println!("| --- | --- | --- | --- |");
    for (name, before, after, total) in rows {
        println!("| {name} | {before:.3} | {after:.3} | {total:.3} |");
    }
    let value = json!({
        "n": n,
        "batch": BATCH,
        "dim": DIM,
        "draws": DRAWS,
        "reps": reps,
        "quick": quick,
        "rows": rows.iter().map(|(name, before, after, total)| json!({
            "step": name, "host_before_ms": before, "host_after_ms": after, "after_total_ms": total,
        })).collect::<Vec<_>>(),
    });
    if let Some(parent) = json_out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(json_out, serde_json::to_string_pretty(&value)?)?;
    eprintln!("wrote {}", json_out.display());
    Ok(())
}
