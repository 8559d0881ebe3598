//! A variant against its baseline over several seeds: the evidence a "beats the baseline"
//! claim needs (docs/design.md, Training and results). One seed is not evidence — on the
//! embedded datasets a single run's metric moves by several points with the float summation
//! order alone — so a claim is the mean gain over at least [`MIN_SEEDS`] seeds, above a stated
//! margin, reported with its spread.

/// Fewest seeds a claim may rest on.
pub const MIN_SEEDS: usize = 3;

/// One metric of a variant and its baseline, seed by seed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SeedComparison {
    /// The metric's name (`top1`, `map`, …).
    pub metric: String,
    /// `(seed, baseline, variant)` per run.
    pub runs: Vec<(u64, f64, f64)>,
}

impl SeedComparison {
    /// An empty comparison of `metric`.
    pub fn new(metric: impl Into<String>) -> Self {
        Self {
            metric: metric.into(),
            runs: Vec::new(),
        }
    }

    /// Adds one seed's pair of results.
    pub fn push(&mut self, seed: u64, baseline: f64, variant: f64) {
        self.runs.push((seed, baseline, variant));
    }

    /// `variant − baseline` per seed.
    pub fn gains(&self) -> Vec<f64> {
        self.runs.iter().map(|&(_, b, v)| v - b).collect()
    }

    /// The mean gain (NaN without runs).
    pub fn mean_gain(&self) -> f64 {
        mean(&self.gains())
    }

    /// The gains' sample standard deviation (NaN below two runs).
    pub fn gain_std(&self) -> f64 {
        let gains = self.gains();
        if gains.len() < 2 {
            return f64::NAN;
        }
        let m = mean(&gains);
        let ss: f64 = gains.iter().map(|g| (g - m) * (g - m)).sum();
        (ss / (gains.len() - 1) as f64).sqrt()
    }

    /// Does the claim hold: at least [`MIN_SEEDS`] seeds, and a mean gain above `margin`?
    pub fn holds(&self, margin: f64) -> bool {
        self.runs.len() >= MIN_SEEDS && self.mean_gain() > margin
    }

    /// A Markdown table (seed, baseline, variant, gain), the means, the gain's spread, and one
    /// line saying whether the gain clears `margin`.
    pub fn summary(&self, margin: f64) -> String {
        let metric = &self.metric;
        let mut s = format!("| seed | baseline {metric} | variant {metric} | gain |\n");
        s.push_str("| --- | --- | --- | --- |\n");
        for &(seed, b, v) in &self.runs {
            s.push_str(&format!("| {seed} | {b:.4} | {v:.4} | {:+.4} |\n", v - b));
        }
        let column =
            |f: fn(&(u64, f64, f64)) -> f64| mean(&self.runs.iter().map(f).collect::<Vec<_>>());
        s.push_str(&format!(
            "| mean | {:.4} | {:.4} | {:+.4} (sd {:.4}) |\n",
            column(|r| r.1),
            column(|r| r.2),
            self.mean_gain(),
            self.gain_std()
        ));
        let verdict = if self.runs.len() < MIN_SEEDS {
            format!("not enough seeds: {} of {MIN_SEEDS}", self.runs.len())
        } else if self.holds(margin) {
            format!("the variant is ahead by more than {margin} on the mean")
        } else {
            format!("the claim does not hold: mean gain not above {margin}")
        };
        s.push_str(&format!("\n{verdict}\n"));
        s
    }
}

/// The note a single run's table prints under it about a claim: that `variant` is above its
/// baseline on `metric` but one seed decides nothing, or — in bold — that the claim does not
/// hold on this run. `name` is the variant's name ("CSRMS"), `evidence` where the several-seed
/// comparison is ("docs/csrms.md, \"Results\"").
pub fn single_run_note(
    name: &str,
    metric: &str,
    (variant, baseline): (f64, f64),
    evidence: &str,
) -> String {
    // Fractions (mAP) with four decimals, percentages and sums with two.
    let digits = if variant.abs() <= 1.0 && baseline.abs() <= 1.0 {
        4
    } else {
        2
    };
    let (v, b) = (
        format!("{variant:.digits$}"),
        format!("{baseline:.digits$}"),
    );
    if variant > baseline {
        format!(
            "{name}'s {metric} is above the baseline's on this run ({v} against {b}); one \
             seed decides nothing: {evidence} compares several."
        )
    } else {
        format!(
            "**{name} does not beat the baseline on this run**: {metric} {v} against {b} \
             ({evidence} compares several seeds)."
        )
    }
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_spread_and_verdict() {
        let mut c = SeedComparison::new("top1");
        c.push(42, 60.0, 65.0);
        c.push(1, 70.0, 69.0);
        assert!(!c.holds(0.0), "two seeds are not enough");
        assert!(c.summary(0.0).contains("not enough seeds: 2 of 3"));
        c.push(2, 50.0, 56.0);
        assert_eq!(c.gains(), [5.0, -1.0, 6.0]);
        assert!((c.mean_gain() - 10.0 / 3.0).abs() < 1e-12);
        // Sample standard deviation of 5, −1, 6.
        let m = 10.0 / 3.0;
        let sd =
            (((5.0f64 - m).powi(2) + (-1.0f64 - m).powi(2) + (6.0f64 - m).powi(2)) / 2.0).sqrt();
        assert!((c.gain_std() - sd).abs() < 1e-12);
        assert!(c.holds(3.0) && !c.holds(3.5));
        let table = c.summary(3.5);
        assert!(
            table.contains("| 1 | 70.0000 | 69.0000 | -1.0000 |"),
            "{table}"
        );
        assert!(table.contains("the claim does not hold"), "{table}");
        assert!(c.summary(1.0).contains("ahead by more than 1"));
    }

    #[test]
    fn a_single_run_says_which_way_it_went() {
        let ahead = single_run_note("CSRMS", "top-1", (70.0, 68.5), "docs/csrms.md");
        assert!(ahead.contains("above the baseline's") && ahead.contains("70.00 against 68.50"));
        let behind = single_run_note("CSRMS", "top-1", (68.5, 68.5), "docs/csrms.md");
        assert!(behind.starts_with("**CSRMS does not beat the baseline on this run**"));
    }
}
