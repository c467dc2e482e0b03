//! The harness's results: one [`Figure`] per measured value, its target and verdicts, the JSON
//! file `cargo xtask bench` keeps and the table it prints.

use std::path::Path;

use serde::Serialize;

/// What a figure must reach.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Target {
    /// The value must be at least this.
    AtLeast(f64),
    /// The value must be at most this.
    AtMost(f64),
    /// No target: the figure is reported for context (a baseline, a detail).
    Report,
}

impl Target {
    /// Whether `value` meets the target in full.
    fn met(self, value: f64) -> bool {
        match self {
            Target::AtLeast(t) => value >= t,
            Target::AtMost(t) => value <= t,
            Target::Report => true,
        }
    }

    /// Whether `value` is a gross regression: below half an at-least target, or above twice an
    /// at-most target (the same factor of two, on the side that is worse).
    fn grossly_missed(self, value: f64) -> bool {
        match self {
            Target::AtLeast(t) => value < t / 2.0,
            Target::AtMost(t) => value > t * 2.0,
            Target::Report => false,
        }
    }

    fn describe(self, unit: &str) -> String {
        match self {
            Target::AtLeast(t) => format!("≥ {}{}", number(t), unit_suffix(unit)),
            Target::AtMost(t) => format!("≤ {}{}", number(t), unit_suffix(unit)),
            Target::Report => "—".into(),
        }
    }
}

/// The verdict on one figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The target is met.
    Pass,
    /// Missed, but by less than a factor of two: not a gross regression.
    Miss,
    /// Missed by more than a factor of two: `--quick` fails on this.
    Fail,
    /// Reported only; no target.
    Info,
    /// Could not be measured in this build (the reason is in the note).
    NotAvailable,
}

/// A baseline a figure is compared with, measured in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct Baseline {
    /// The baseline's figure name.
    pub name: String,
    /// Its value.
    pub value: f64,
}

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// The scenario (`S0` … `S7`).
    pub scenario: &'static str,
    /// What was measured.
    pub name: String,
    /// The value (`None`: not available in this build).
    pub value: Option<f64>,
    /// Its unit (`/s`, `ms`, `µs`, `MB`, `×`).
    pub unit: &'static str,
    /// The baseline it is compared with, if any.
    pub baseline: Option<Baseline>,
    /// `value / baseline`, when there is a baseline.
    pub ratio: Option<f64>,
    /// The target (on the value, or on the ratio when `target_on_ratio`).
    pub target: Target,
    /// Whether `target` applies to `ratio` rather than to `value`.
    pub target_on_ratio: bool,
    /// The verdict.
    pub verdict: Verdict,
    /// How it was measured, in a few words.
    pub note: String,
}

impl Figure {
    /// A figure with no baseline, judged on its value.
    pub fn new(scenario: &'static str, name: &str, value: f64, unit: &'static str) -> Figure {
        Figure {
            scenario,
            name: name.to_owned(),
            value: Some(value),
            unit,
            baseline: None,
            ratio: None,
            target: Target::Report,
            target_on_ratio: false,
            verdict: Verdict::Info,
            note: String::new(),
        }
        .judged()
    }

    /// A figure that this build cannot measure, with the reason.
    pub fn not_available(
        scenario: &'static str,
        name: &str,
        unit: &'static str,
        why: &str,
    ) -> Figure {
        Figure {
            value: None,
            verdict: Verdict::NotAvailable,
            note: why.to_owned(),
            ..Figure::new(scenario, name, 0.0, unit)
        }
    }

    /// The same figure with `target` on its value.
    pub fn target(mut self, target: Target) -> Figure {
        self.target = target;
        self.target_on_ratio = false;
        self.judged()
    }

    /// The same figure compared with `baseline` (`name`, `value`); `target` applies to the ratio.
    pub fn against(mut self, name: &str, value: f64, target: Target) -> Figure {
        self.baseline = Some(Baseline {
            name: name.to_owned(),
            value,
        });
        self.ratio = self.value.map(|v| v / value);
        self.target = target;
        self.target_on_ratio = true;
        self.judged()
    }

    /// The same figure with a note on how it was measured.
    pub fn note(mut self, note: impl Into<String>) -> Figure {
        self.note = note.into();
        self
    }

    fn judged(mut self) -> Figure {
        let judged = if self.target_on_ratio {
            self.ratio
        } else {
            self.value
        };
        self.verdict = match (judged, self.target) {
            _ if self.verdict == Verdict::NotAvailable => Verdict::NotAvailable,
            (None, _) => Verdict::NotAvailable,
            (Some(_), Target::Report) => Verdict::Info,
            (Some(v), t) if !v.is_finite() || t.grossly_missed(v) => Verdict::Fail,
            (Some(v), t) if t.met(v) => Verdict::Pass,
            (Some(_), _) => Verdict::Miss,
        };
        self
    }
}

/// The whole run, as written to the results file.
#[derive(Debug, Serialize)]
pub struct Run {
    /// `full` or `quick`.
    pub mode: &'static str,
    /// The cargo profile the harness was built with.
    pub profile: &'static str,
    /// Seconds since the Unix epoch when the run started.
    pub started_at: u64,
    /// Wall-clock seconds the run took.
    pub seconds: f64,
    /// `nproc`.
    pub cpus: usize,
    /// The load average when the run started (1, 5, 15 minutes), from `/proc/loadavg`.
    pub load_average: String,
    /// Every figure, in scenario order.
    pub figures: Vec<Figure>,
}

impl Run {
    /// Writes the run as pretty JSON to `path`, creating its directory.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, json + "\n")
    }

    /// Figures missed by more than a factor of two.
    pub fn gross_failures(&self) -> Vec<&Figure> {
        self.figures
            .iter()
            .filter(|f| f.verdict == Verdict::Fail)
            .collect()
    }

    /// The table: figure, value, baseline, ratio, target, verdict.
    pub fn table(&self) -> String {
        let header = [
            "#", "figure", "value", "baseline", "ratio", "target", "verdict",
        ];
        let mut rows: Vec<[String; 7]> = vec![header.map(String::from)];
        for f in &self.figures {
            let value = f.value.map_or_else(
                || "n/a".to_owned(),
                |v| format!("{}{}", number(v), unit_suffix(f.unit)),
            );
            let baseline = f
                .baseline
                .as_ref()
                .map_or_else(String::new, |b| format!("{} {}", b.name, number(b.value)));
            let ratio = f.ratio.map_or_else(String::new, |r| format!("{r:.2}"));
            let unit = if f.target_on_ratio { "×" } else { f.unit };
            let verdict = match f.verdict {
                Verdict::Pass => "pass",
                Verdict::Miss => "MISS",
                Verdict::Fail => "FAIL (< ½ target)",
                Verdict::Info => "",
                Verdict::NotAvailable => "not available",
            };
            rows.push([
                f.scenario.to_owned(),
                f.name.clone(),
                value,
                baseline,
                ratio,
                f.target.describe(unit),
                verdict.to_owned(),
            ]);
        }
        let widths: Vec<usize> = (0..7)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in &rows {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, &w)| format!("{cell}{}", " ".repeat(w - cell.chars().count())))
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        out
    }
}

/// `value` rounded for reading: thousands grouped above 100, two decimals below.
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return format!("{value}");
    }
    if value.abs() < 100.0 {
        return format!("{value:.2}");
    }
    let rounded = value.round() as i64;
    let digits = rounded.unsigned_abs().to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if rounded < 0 {
        grouped.insert(0, '-');
    }
    grouped
}

fn unit_suffix(unit: &str) -> String {
    match unit {
        "/s" | "×" => unit.to_owned(),
        "" => String::new(),
        _ => format!(" {unit}"),
    }
}
