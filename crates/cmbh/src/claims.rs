//! The paper's qualitative claims, checked on a reproduction's results table and printed under
//! it: longer codes are not worse (Table 2: the 48-bit mAP is never below the 12-bit one) and the
//! ablation ranks B < B+L < B+L+T < full (Table 4). One seed states which way the run went;
//! several seeds give the mean, the spread and how many seeds agree (docs/cmbh.md, "Results").

use relata_train::SeedComparison;
use serde_json::{Map, Value};

/// One seed's results rows (`{variant, bits, map}`).
pub type SeedRows = (u64, Vec<Map<String, Value>>);

/// The mAP of `variant` at `bits` in `rows`.
pub(crate) fn map_of(rows: &[Map<String, Value>], variant: &str, bits: u64) -> Option<f64> {
    rows.iter()
        .find(|r| {
            r.get("variant").and_then(Value::as_str) == Some(variant)
                && r.get("bits").and_then(Value::as_u64) == Some(bits)
        })
        .and_then(|r| r.get("map"))
        .and_then(Value::as_f64)
}

/// Table 4's variants in the order the paper ranks them.
const RANKING: [&str; 4] = ["B", "B+L", "B+L+T", "full"];

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// The notes for every claim the rows can check: the codes claim when the full model ran at two
/// or more code lengths (shortest against longest), the ranking claim at each code length
/// where all four variants ran. Every seed must have the rows for a claim to be checked.
/// `region_share` is the region term's share of the full model's training loss at its last
/// epoch (mean over its runs): a failing region step states it.
pub fn claim_notes(seeds: &[SeedRows], region_share: Option<f64>) -> Vec<String> {
    let Some((_, first)) = seeds.first() else {
        return Vec::new();
    };
    let mut bits: Vec<u64> = first
        .iter()
        .filter(|r| r.get("variant").and_then(Value::as_str) == Some("full"))
        .filter_map(|r| r.get("bits").and_then(Value::as_u64))
        .collect();
    bits.sort_unstable();
    bits.dedup();
    let mut notes = Vec::new();
    if let (Some(&short), Some(&long)) = (bits.first(), bits.last())
        && short < long
        && let Some(note) = codes_note(seeds, short, long)
    {
        notes.push(note);
    }
    for &b in &bits {
        if let Some(note) = ranking_note(seeds, b, region_share) {
            notes.push(note);
        }
    }
    notes
}

/// Longer codes are not worse: the full model's mAP at `long` bits against `short` bits.
fn codes_note(seeds: &[SeedRows], short: u64, long: u64) -> Option<String> {
    let mut comparison = SeedComparison::new("map");
    for (seed, rows) in seeds {
        comparison.push(
            *seed,
            map_of(rows, "full", short)?,
            map_of(rows, "full", long)?,
        );
    }
    let claim = format!("{long}-bit codes are not worse than {short}-bit ones (Table 2)");
    let gain = comparison.mean_gain();
    let agree = comparison.gains().iter().filter(|&&g| g >= 0.0).count();
    Some(if let [(_, s, l)] = comparison.runs[..] {
        if l >= s {
            format!("{claim}: holds on this run ({l:.4} against {s:.4}); one seed decides nothing.")
        } else {
            format!("**{claim}: does not hold on this run** ({l:.4} against {s:.4}).")
        }
    } else {
        let n = comparison.runs.len();
        let body = format!(
            "mean {long} − {short} bits {gain:+.4} over {n} seeds (sd {:.4}), not worse at {agree} \
             of {n}",
            comparison.gain_std()
        );
        if gain >= 0.0 {
            format!("{claim}: holds on the mean, {body}.")
        } else {
            format!("**{claim}: does not hold**, {body}.")
        }
    })
}

/// Table 4's ranking B < B+L < B+L+T < full at `bits`, on the means over seeds.
fn ranking_note(seeds: &[SeedRows], bits: u64, region_share: Option<f64>) -> Option<String> {
    let mut per_variant = Vec::new();
    for v in RANKING {
        let maps: Option<Vec<f64>> = seeds.iter().map(|(_, r)| map_of(r, v, bits)).collect();
        per_variant.push(maps?);
    }
    let means: Vec<f64> = per_variant.iter().map(|m| mean(m)).collect();
    let ranked = |m: &[f64]| m.windows(2).all(|w| w[0] < w[1]);
    let agree = (0..seeds.len())
        .filter(|&i| ranked(&per_variant.iter().map(|m| m[i]).collect::<Vec<_>>()))
        .count();
    let n = seeds.len();
    let values = RANKING
        .iter()
        .zip(&means)
        .map(|(v, m)| format!("{v} {m:.4}"))
        .collect::<Vec<_>>()
        .join(", ");
    let claim = format!("Table 4's ranking B < B+L < B+L+T < full at {bits} bits");
    let broken: Vec<String> = RANKING
        .windows(2)
        .zip(means.windows(2))
        .filter(|(_, m)| m[0] >= m[1])
        .map(|(v, _)| {
            let mut step = format!("{} is not above {}", v[1], v[0]);
            if v[1] == "full"
                && let Some(share) = region_share
            {
                step.push_str(&format!(
                    " — L_region was {:.0} % of the full model's training loss at its last epoch \
                     (docs/cmbh.md, \"Results\")",
                    100.0 * share
                ));
            }
            step
        })
        .collect();
    let over = if n == 1 {
        "on this run".to_string()
    } else {
        format!("on the means over {n} seeds")
    };
    Some(if broken.is_empty() {
        let seeds_note = if n == 1 {
            "; one seed decides nothing".to_string()
        } else {
            format!("; ranked so at {agree} of {n} seeds")
        };
        format!("{claim}: holds {over} ({values}){seeds_note}.")
    } else {
        format!(
            "**{claim}: does not hold {over}** ({values}: {}).",
            broken.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rows(values: &[(&str, u64, f64)]) -> Vec<Map<String, Value>> {
        values
            .iter()
            .map(|(v, b, m)| {
                json!({"variant": v, "bits": b, "map": m})
                    .as_object()
                    .unwrap()
                    .clone()
            })
            .collect()
    }

    /// One seed: which way each claim went; several: the mean, its spread, how many agree, and
    /// in bold which step of the ranking fails.
    #[test]
    fn claims_are_judged_per_run_and_over_seeds() {
        let one = vec![(
            42,
            rows(&[
                ("B", 12, 0.1),
                ("B+L", 12, 0.2),
                ("B+L+T", 12, 0.3),
                ("full", 12, 0.4),
                ("full", 48, 0.35),
            ]),
        )];
        let notes = claim_notes(&one, None);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].starts_with("**48-bit codes are not worse than 12-bit ones (Table 2): does not hold on this run** (0.3500 against 0.4000)"),
            "{}",
            notes[0]
        );
        assert!(
            notes[1].contains("at 12 bits: holds on this run (B 0.1000, B+L 0.2000"),
            "{}",
            notes[1]
        );

        let seeds = vec![
            (
                1,
                rows(&[("full", 12, 0.5), ("full", 24, 0.1), ("full", 48, 0.6)]),
            ),
            (
                2,
                rows(&[("full", 12, 0.5), ("full", 24, 0.1), ("full", 48, 0.4)]),
            ),
            (
                3,
                rows(&[("full", 12, 0.5), ("full", 24, 0.1), ("full", 48, 0.8)]),
            ),
        ];
        let notes = claim_notes(&seeds, None);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("holds on the mean, mean 48 − 12 bits +0.1000 over 3 seeds (sd 0.2000), not worse at 2 of 3"),
            "{}",
            notes[0]
        );

        let ranking = |full: f64| {
            (1..=3)
                .map(|s| {
                    let t = 0.3 + 0.01 * s as f64;
                    (
                        s,
                        rows(&[
                            ("B", 12, 0.1),
                            ("B+L", 12, 0.2),
                            ("B+L+T", 12, t),
                            ("full", 12, full),
                        ]),
                    )
                })
                .collect::<Vec<_>>()
        };
        let notes = claim_notes(&ranking(0.25), None);
        assert!(
            notes[0].starts_with("**Table 4's ranking B < B+L < B+L+T < full at 12 bits: does not hold on the means over 3 seeds**")
                && notes[0].ends_with("full is not above B+L+T)."),
            "{}",
            notes[0]
        );
        // A failing region step states the region term's share of the loss when known.
        let share = claim_notes(&ranking(0.25), Some(0.7));
        assert!(
            share[0].ends_with("full is not above B+L+T — L_region was 70 % of the full model's training loss at its last epoch (docs/cmbh.md, \"Results\"))."),
            "{}",
            share[0]
        );
        let notes = claim_notes(&ranking(0.325), None);
        assert!(
            notes[0].contains("ranked so at 2 of 3 seeds"),
            "{}",
            notes[0]
        );
        // A claim some seed lacks rows for is not judged.
        let mut partial = ranking(0.5);
        partial[1].1.pop();
        assert!(claim_notes(&partial, None).is_empty());
    }
}
