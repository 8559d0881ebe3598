//! Run directories: `runs/<method>/<dataset>/<time>/` (docs/design.md, Training and results).
//!
//! A run directory holds `config.json` (the method's full configuration), `metrics.jsonl` (one
//! [`EpochRecord`] per epoch), `metrics.json` (the final [`Results`], one schema for all
//! methods), `report.md`, `curves/*.png` and `checkpoints/`. Opening one enforces the rule that
//! results are never silently clobbered: an existing directory is continued only with
//! `resume` and an identical configuration, and replaced only with `overwrite`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::checkpoint::write_atomic;
use crate::error::TrainError;

/// Where a run goes and whether it may continue or replace an existing one.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Root of all runs (`runs/` by default).
    pub runs_root: PathBuf,
    /// Method name (`cmbh`, `hrem`, ...).
    pub method: String,
    /// Dataset name (`synth-fine`, `cub`, ...).
    pub dataset: String,
    /// An explicit run directory instead of `<runs_root>/<method>/<dataset>/<time>`.
    pub dir: Option<PathBuf>,
    /// Continue the run in `dir` (or the newest run of this method and dataset).
    pub resume: bool,
    /// Replace whatever `dir` holds.
    pub overwrite: bool,
}

impl RunOptions {
    /// Options for a fresh run under `runs/`.
    pub fn new(method: impl Into<String>, dataset: impl Into<String>) -> Self {
        Self {
            runs_root: PathBuf::from("runs"),
            method: method.into(),
            dataset: dataset.into(),
            dir: None,
            resume: false,
            overwrite: false,
        }
    }

    /// Uses this root instead of `runs/`.
    pub fn with_runs_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.runs_root = root.into();
        self
    }

    /// Uses this exact run directory.
    pub fn with_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Continues an existing run.
    pub fn with_resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// Replaces an existing run.
    pub fn with_overwrite(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }
}

/// One line of `metrics.jsonl`: what happened in one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct EpochRecord {
    /// Epochs completed in the run, including this one (1-based).
    pub epoch: usize,
    /// Phase name.
    pub phase: String,
    /// Epochs completed in the phase, including this one (1-based).
    pub epoch_in_phase: usize,
    /// Optimiser steps in the epoch.
    pub steps: usize,
    /// Samples seen in the epoch.
    pub samples: usize,
    /// Wall-clock seconds of the epoch's training steps.
    pub seconds: f64,
    /// Training throughput.
    pub samples_per_sec: f64,
    /// Base learning rate of each optimiser at the epoch's last step.
    pub lr: BTreeMap<String, f64>,
    /// Epoch means of the loss terms (and `total`).
    pub loss: BTreeMap<String, f64>,
    /// Validation metrics, when the evaluator ran this epoch.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub val: BTreeMap<String, f64>,
    /// Other scalars the method recorded (epoch means).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, f64>,
    /// Every optimiser step's loss terms, in order (only with `TrainerConfig::log_steps`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps_log: Vec<StepLoss>,
}

/// The loss terms one optimiser update minimised (`EpochRecord::steps_log`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepLoss {
    /// Steps before this one in the run.
    pub global_step: usize,
    /// The optimiser that took the update.
    pub optimizer: String,
    /// Each term's value, and `total`.
    pub terms: BTreeMap<String, f64>,
}

/// `metric` of the first row of `variant` among result rows (`None` if either is missing).
pub fn row_metric(rows: &[Map<String, Value>], variant: &str, metric: &str) -> Option<f64> {
    rows.iter()
        .find(|r| r.get("variant").and_then(Value::as_str) == Some(variant))
        .and_then(|r| r.get(metric))
        .and_then(Value::as_f64)
}

/// `metrics.json`: the final results, one schema for every method (docs/design.md, Training and results).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Results {
    /// Method name.
    pub method: String,
    /// Dataset name.
    pub dataset: String,
    /// `smoke`, `default` or `paper`.
    pub preset: String,
    /// Device the run used.
    pub device: String,
    /// Wall-clock seconds of the whole run.
    pub seconds: f64,
    /// Measured rows: `{"variant": .., ["bits": ..], "<metric>": value, ...}`.
    pub rows: Vec<serde_json::Map<String, Value>>,
    /// The paper's rows, same shape, where the paper gives numbers.
    #[serde(default)]
    pub paper: Vec<serde_json::Map<String, Value>>,
    /// What a reader must know to read the table (a claim that does not hold on this run, how
    /// the paper's numbers were obtained), printed under it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "–".to_string(),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.4}"),
            _ => n.to_string(),
        },
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

impl Results {
    /// The measured `metric` of the first row whose `variant` is `variant` (e.g.
    /// `("full", "top1")`); `None` when there is no such row or the value is not a number.
    pub fn metric(&self, variant: &str, metric: &str) -> Option<f64> {
        row_metric(&self.rows, variant, metric)
    }

    /// The rows as a Markdown table, every metric measured beside the paper's value.
    pub fn to_markdown(&self) -> String {
        let key_cols: Vec<&str> = ["variant", "bits"]
            .into_iter()
            .filter(|k| {
                self.rows
                    .iter()
                    .chain(&self.paper)
                    .any(|r| r.contains_key(*k))
            })
            .collect();
        let mut metrics: Vec<String> = Vec::new();
        for row in self.rows.iter().chain(&self.paper) {
            for k in row.keys() {
                if !key_cols.contains(&k.as_str()) && !metrics.contains(k) {
                    metrics.push(k.clone());
                }
            }
        }
        let same_key = |a: &serde_json::Map<String, Value>, b: &serde_json::Map<String, Value>| {
            key_cols.iter().all(|k| a.get(*k) == b.get(*k))
        };
        // A "(paper)" column beside each metric the paper reports (not beside a spread or a
        // per-seed column).
        let has_paper = |m: &str| self.paper.iter().any(|p| p.contains_key(m));
        let mut out = String::new();
        let mut header: Vec<String> = key_cols.iter().map(|s| s.to_string()).collect();
        for m in &metrics {
            header.push(m.clone());
            if has_paper(m) {
                header.push(format!("{m} (paper)"));
            }
        }
        let _ = writeln!(out, "| {} |", header.join(" | "));
        let _ = writeln!(out, "|{}", " --- |".repeat(header.len()));
        for row in &self.rows {
            let paper = self.paper.iter().find(|p| same_key(p, row));
            let mut cells: Vec<String> = key_cols.iter().map(|k| cell(row.get(*k))).collect();
            for m in &metrics {
                cells.push(cell(row.get(m)));
                if has_paper(m) {
                    cells.push(cell(paper.and_then(|p| p.get(m))));
                }
            }
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        for note in &self.notes {
            let _ = write!(out, "\n{note}\n");
        }
        out
    }
}

/// An open run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
    resumed: bool,
}

/// `YYYYMMDD-HHMMSS` in UTC.
fn timestamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Keys whose values differ between two JSON values, as `a.b: old -> new` (at most 8).
pub fn config_diff(old: &Value, new: &Value) -> Vec<String> {
    fn walk(prefix: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    match (x.get(k), y.get(k)) {
                        (Some(u), Some(v)) => walk(&p, u, v, out),
                        (u, v) => out.push(format!(
                            "{p}: {} -> {}",
                            u.map_or("(absent)".into(), ToString::to_string),
                            v.map_or("(absent)".into(), ToString::to_string)
                        )),
                    }
                }
            }
            _ if a != b => out.push(format!("{prefix}: {a} -> {b}")),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", old, new, &mut out);
    out
}

impl RunDir {
    /// Opens (creates, continues or replaces) a run directory for `config`.
    pub fn open(opts: &RunOptions, config: &Value) -> Result<Self, TrainError> {
        let group = opts.runs_root.join(&opts.method).join(&opts.dataset);
        let path = match (&opts.dir, opts.resume) {
            (Some(dir), _) => dir.clone(),
            (None, true) => newest_run(&group).ok_or_else(|| TrainError::NothingToResume {
                dir: group.clone(),
                reason: "no earlier run of this method and dataset; drop --resume to start one"
                    .into(),
            })?,
            (None, false) => {
                let base = group.join(timestamp());
                let mut candidate = base.clone();
                let mut n = 2;
                while candidate.exists() {
                    candidate = PathBuf::from(format!("{}-{n}", base.display()));
                    n += 1;
                }
                candidate
            }
        };
        let config_path = path.join("config.json");
        let mut resumed = false;
        if config_path.exists() {
            let old_bytes =
                fs::read(&config_path).map_err(|e| TrainError::io("reading", &config_path, e))?;
            let old: Value = serde_json::from_slice(&old_bytes).map_err(|e| {
                TrainError::Config(format!(
                    "{} is not valid JSON ({e}); pass --overwrite to replace the run",
                    config_path.display()
                ))
            })?;
            let diff = config_diff(&old, config);
            if opts.overwrite {
                fs::remove_dir_all(&path).map_err(|e| TrainError::io("removing", &path, e))?;
            } else if !diff.is_empty() {
                let shown: Vec<String> = diff.iter().take(8).cloned().collect();
                let more = if diff.len() > 8 {
                    format!(" and {} more", diff.len() - 8)
                } else {
                    String::new()
                };
                return Err(TrainError::ConfigMismatch {
                    dir: path,
                    diff: format!("{}{more}", shown.join("; ")),
                });
            } else if opts.resume {
                resumed = true;
            } else {
                return Err(TrainError::RunExists { dir: path });
            }
        } else if opts.resume {
            return Err(TrainError::NothingToResume {
                dir: path,
                reason: "no config.json: not a run directory".into(),
            });
        } else if path.exists()
            && fs::read_dir(&path)
                .map(|mut d| d.next().is_some())
                .unwrap_or(false)
            && !opts.overwrite
        {
            return Err(TrainError::RunExists { dir: path });
        }
        fs::create_dir_all(path.join("curves"))
            .map_err(|e| TrainError::io("creating", path.join("curves"), e))?;
        if !resumed {
            let json = serde_json::to_vec_pretty(config).expect("config serialises");
            write_atomic(&config_path, &json)?;
        }
        Ok(Self { path, resumed })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this run continues an earlier one.
    pub fn is_resumed(&self) -> bool {
        self.resumed
    }

    /// Where epoch checkpoints go.
    pub fn checkpoints(&self) -> PathBuf {
        self.path.join("checkpoints")
    }

    /// Where curves go.
    pub fn curves(&self) -> PathBuf {
        self.path.join("curves")
    }

    fn jsonl(&self) -> PathBuf {
        self.path.join("metrics.jsonl")
    }

    /// Appends one epoch to `metrics.jsonl`.
    pub fn append_epoch(&self, record: &EpochRecord) -> Result<(), TrainError> {
        let path = self.jsonl();
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| TrainError::io("opening", &path, e))?;
        let mut line = serde_json::to_string(record).expect("record serialises");
        line.push('\n');
        f.write_all(line.as_bytes())
            .map_err(|e| TrainError::io("appending to", &path, e))
    }

    /// The epochs recorded so far (a torn last line, from a crash, is ignored).
    pub fn read_epochs(&self) -> Result<Vec<EpochRecord>, TrainError> {
        let path = self.jsonl();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(TrainError::io("reading", &path, e)),
        };
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }

    /// Replaces `metrics.jsonl` (used on resume to drop epochs after the checkpoint).
    pub fn rewrite_epochs(&self, records: &[EpochRecord]) -> Result<(), TrainError> {
        let mut text = String::new();
        for r in records {
            text.push_str(&serde_json::to_string(r).expect("record serialises"));
            text.push('\n');
        }
        write_atomic(&self.jsonl(), text.as_bytes())
    }

    /// Writes `metrics.json` and re-renders `report.md` with the results table.
    pub fn write_results(&self, results: &Results) -> Result<(), TrainError> {
        let json = serde_json::to_vec_pretty(results).expect("results serialise");
        write_atomic(&self.path.join("metrics.json"), &json)?;
        self.write_report(Some(results))
    }

    /// The final results, if written.
    pub fn read_results(&self) -> Option<Results> {
        let bytes = fs::read(self.path.join("metrics.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Renders `report.md`: results table (when given), training summary and curves.
    pub fn write_report(&self, results: Option<&Results>) -> Result<(), TrainError> {
        let epochs = self.read_epochs()?;
        let mut md = String::new();
        let title = results.map_or_else(
            || self.path.display().to_string(),
            |r| format!("{} on {}", r.method, r.dataset),
        );
        let _ = writeln!(md, "# {title}\n");
        if let Some(r) = results {
            let _ = writeln!(
                md,
                "Preset `{}`, device `{}`, {:.1} s.\n",
                r.preset, r.device, r.seconds
            );
            let _ = writeln!(md, "## Results\n");
            md.push_str(&r.to_markdown());
            md.push('\n');
        }
        if let Some(last) = epochs.last() {
            let _ = writeln!(md, "## Training\n");
            let _ = writeln!(
                md,
                "{} epochs; last: phase `{}`, {:.1} samples/s.\n",
                last.epoch, last.phase, last.samples_per_sec
            );
            let _ = writeln!(md, "| epoch | phase | {} |", {
                let mut cols: Vec<String> = last.loss.keys().cloned().collect();
                cols.extend(last.val.keys().map(|k| format!("val {k}")));
                cols.join(" | ")
            });
            let ncols = 2 + last.loss.len() + last.val.len();
            let _ = writeln!(md, "|{}", " --- |".repeat(ncols));
            for e in &epochs {
                let mut cells = vec![e.epoch.to_string(), e.phase.clone()];
                cells.extend(
                    last.loss
                        .keys()
                        .map(|k| e.loss.get(k).map_or("–".into(), |v| format!("{v:.4}"))),
                );
                cells.extend(
                    last.val
                        .keys()
                        .map(|k| e.val.get(k).map_or("–".into(), |v| format!("{v:.4}"))),
                );
                let _ = writeln!(md, "| {} |", cells.join(" | "));
            }
            md.push('\n');
        }
        let mut pngs: Vec<String> = fs::read_dir(self.curves())
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".png"))
                    .collect()
            })
            .unwrap_or_default();
        pngs.sort();
        if !pngs.is_empty() {
            let _ = writeln!(md, "## Curves\n");
            for p in pngs {
                let _ = writeln!(md, "![{p}](curves/{p})");
            }
        }
        write_atomic(&self.path.join("report.md"), md.as_bytes())
    }
}

/// The newest run directory (by name, which sorts by time) under `group` that has a config.
fn newest_run(group: &Path) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(group)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("config.json").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timestamp_shape() {
        let t = timestamp();
        assert_eq!(t.len(), 15, "{t}");
        assert!(t.starts_with("20"));
    }

    #[test]
    fn refuses_different_config_and_existing_run() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let opts = RunOptions::new("toy", "synth").with_dir(&dir);
        let cfg = json!({"lr": 0.1, "optim": {"momentum": 0.9}});
        let run = RunDir::open(&opts, &cfg).unwrap();
        assert!(!run.is_resumed());
        // Same config, no resume: refused.
        let err = RunDir::open(&opts, &cfg).unwrap_err();
        assert!(matches!(err, TrainError::RunExists { .. }), "{err}");
        // Different config: refused, naming the key, even with --resume.
        let other = json!({"lr": 0.2, "optim": {"momentum": 0.9}});
        let err = RunDir::open(&opts.clone().with_resume(true), &other).unwrap_err();
        assert!(err.to_string().contains("lr: 0.1 -> 0.2"), "{err}");
        // Resume with the same config continues.
        let run = RunDir::open(&opts.clone().with_resume(true), &cfg).unwrap();
        assert!(run.is_resumed());
        // Overwrite replaces.
        let run = RunDir::open(&opts.clone().with_overwrite(true), &other).unwrap();
        assert!(!run.is_resumed());
        let saved: Value =
            serde_json::from_slice(&fs::read(dir.join("config.json")).unwrap()).unwrap();
        assert_eq!(saved, other);
    }

    #[test]
    fn timestamped_runs_and_resume_newest() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = RunOptions::new("toy", "synth").with_runs_root(tmp.path());
        let cfg = json!({"a": 1});
        let first = RunDir::open(&opts, &cfg).unwrap();
        let second = RunDir::open(&opts, &cfg).unwrap();
        assert_ne!(first.path(), second.path());
        assert!(first.path().starts_with(tmp.path().join("toy/synth")));
        let resumed = RunDir::open(&opts.clone().with_resume(true), &cfg).unwrap();
        assert_eq!(resumed.path(), second.path());
        let none = RunOptions::new("toy", "other")
            .with_runs_root(tmp.path())
            .with_resume(true);
        assert!(matches!(
            RunDir::open(&none, &cfg),
            Err(TrainError::NothingToResume { .. })
        ));
    }

    #[test]
    fn results_table_puts_paper_beside_measured() {
        let row = |v: &str, bits: u64, map: f64| {
            json!({"variant": v, "bits": bits, "map": map})
                .as_object()
                .unwrap()
                .clone()
        };
        let r = Results {
            method: "cmbh".into(),
            dataset: "synth-fine".into(),
            preset: "smoke".into(),
            device: "flex".into(),
            seconds: 1.0,
            rows: vec![row("full", 12, 0.5), row("full", 24, 0.6)],
            paper: vec![row("full", 24, 0.8)],
            notes: vec!["The paper's numbers come from another protocol.".into()],
        };
        let md = r.to_markdown();
        assert!(
            md.ends_with("\nThe paper's numbers come from another protocol.\n"),
            "{md}"
        );
        assert!(
            md.contains("| variant | bits | map | map (paper) |"),
            "{md}"
        );
        assert!(md.contains("| full | 24 | 0.6000 | 0.8000 |"), "{md}");
        assert!(md.contains("| full | 12 | 0.5000 | – |"), "{md}");
        // A spread column has no paper column beside it.
        let mut spread = r.clone();
        spread.rows[0].insert("sd".into(), json!(0.1));
        assert!(
            spread
                .to_markdown()
                .contains("| variant | bits | map | map (paper) | sd |\n"),
            "{}",
            spread.to_markdown()
        );
        assert_eq!(r.metric("full", "map"), Some(0.5));
        assert_eq!(r.metric("baseline", "map"), None);
        assert_eq!(r.metric("full", "ndcg"), None);
    }

    #[test]
    fn jsonl_roundtrip_and_torn_line() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::open(
            &RunOptions::new("t", "d").with_dir(tmp.path().join("r")),
            &json!({}),
        )
        .unwrap();
        let rec = EpochRecord {
            epoch: 1,
            phase: "train".into(),
            ..Default::default()
        };
        run.append_epoch(&rec).unwrap();
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(run.path().join("metrics.jsonl"))
            .unwrap();
        f.write_all(b"{\"epoch\": 2, \"pha").unwrap();
        assert_eq!(run.read_epochs().unwrap(), vec![rec]);
    }
}
