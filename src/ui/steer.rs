//! The steer view's state: the rows as typed, checked into interventions by the one parser in
//! [`crate::sae::steer`], and the next-token shift between the default and the steered model.

use crate::sae::steer::{Intervention, InterventionError};
use crate::ui::link::shorten;

/// Next-token shifts shown after a steering run.
pub const SHIFTS_SHOWN: usize = 10;

/// A row's mode, as its select offers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SteerMode {
    Add,
    Clamp,
    Ablate,
    Orthogonal,
    ProjectionCap,
}

impl SteerMode {
    pub const ALL: [SteerMode; 5] = [
        SteerMode::Add,
        SteerMode::Clamp,
        SteerMode::Ablate,
        SteerMode::Orthogonal,
        SteerMode::ProjectionCap,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SteerMode::Add => "add",
            SteerMode::Clamp => "clamp",
            SteerMode::Ablate => "ablate",
            SteerMode::Orthogonal => "orthogonal",
            SteerMode::ProjectionCap => "projection_cap",
        }
    }

    /// The select's value; anything else reads as ablate, as the select offers nothing else.
    pub fn from_name(name: &str) -> Self {
        SteerMode::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .unwrap_or(SteerMode::Ablate)
    }
}

/// A steering row as typed.
#[derive(Debug, Clone, PartialEq)]
pub struct SteerRow {
    pub feature: String,
    pub mode: SteerMode,
    pub value: String,
}

impl SteerRow {
    /// A new row: add the feature's direction at strength 8.
    pub fn adding(feature: String) -> Self {
        Self {
            feature,
            mode: SteerMode::Add,
            value: "8".into(),
        }
    }

    /// The row that shows `intervention` (as a link brings it).
    pub fn of(intervention: &Intervention) -> Self {
        let mode = SteerMode::from_name(intervention.mode.name());
        Self {
            feature: intervention.feature.to_string(),
            mode,
            value: intervention
                .mode
                .amount()
                .map_or_else(String::new, |v| v.to_string()),
        }
    }

    /// This row (number `n`, from 1) as an intervention on an SAE of `d_sae` features, or the
    /// sentence that says what is wrong with it.
    pub fn intervention(&self, n: usize, d_sae: usize) -> Result<Intervention, String> {
        let feature = self.feature.trim().trim_start_matches('#');
        Intervention::from_parts(feature, self.mode.name(), &self.value, d_sae).map_err(|e| match e
        {
            InterventionError::Feature(_) => format!(
                "Steering row {n}: \"{}\" is not a feature number.",
                shorten(&self.feature)
            ),
            InterventionError::Value(_) => format!(
                "Steering row {n}: \"{}\" is not a number.",
                shorten(&self.value)
            ),
            other => format!("Steering row {n}: {other}."),
        })
    }
}

/// Every row as an intervention, or the message naming the first bad one.
pub fn interventions(rows: &[SteerRow], d_sae: usize) -> Result<Vec<Intervention>, String> {
    if rows.is_empty() {
        return Err("Add at least one feature to steer with.".into());
    }
    rows.iter()
        .enumerate()
        .map(|(i, row)| row.intervention(i + 1, d_sae))
        .collect()
}

/// How one token's next-token probability moved when steering.
#[derive(Debug, Clone, PartialEq)]
pub struct Shift {
    pub token: u32,
    pub before: f64,
    pub after: f64,
}

impl Shift {
    pub fn delta(&self) -> f64 {
        self.after - self.before
    }

    /// `12.0% → 30.5% (+18.5)`.
    pub fn describe(&self) -> String {
        format!(
            "{:.1}% → {:.1}% ({:+.1})",
            self.before * 100.0,
            self.after * 100.0,
            self.delta() * 100.0
        )
    }
}

/// The `n` tokens whose probability moved most (either way), largest move first.
pub fn largest_shifts(before: &[f64], after: &[f64], n: usize) -> Vec<Shift> {
    let mut order: Vec<usize> = (0..before.len().min(after.len())).collect();
    // A stable sort: ties keep token order, as the page always showed them.
    order.sort_by(|&a, &b| {
        (after[b] - before[b])
            .abs()
            .total_cmp(&(after[a] - before[a]).abs())
    });
    order
        .into_iter()
        .take(n)
        .map(|i| Shift {
            token: i as u32,
            before: before[i],
            after: after[i],
        })
        .collect()
}

/// What one steering run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct SteerResult {
    pub default_text: String,
    pub steered_text: String,
    /// Rows for the shift chart: token label, change, shown text.
    pub shifts: Vec<(String, f64, String)>,
}
