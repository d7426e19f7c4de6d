//! Chart geometry for the page's pictures (SVG): lines, bars and scatter points scaled into a
//! box. Plain numbers in, plain numbers out, so the scaling is tested without a browser.

/// A chart's drawing box, in SVG user units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    pub width: f64,
    pub height: f64,
    /// Room left for axis labels on every side.
    pub pad: f64,
}

impl Frame {
    pub const SMALL: Frame = Frame {
        width: 320.0,
        height: 140.0,
        pad: 34.0,
    };
    pub const WIDE: Frame = Frame {
        width: 480.0,
        height: 220.0,
        pad: 40.0,
    };
}

/// The data range a chart shows; a flat range is widened so nothing divides by zero.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub min: f64,
    pub max: f64,
}

impl Range {
    /// The range of the finite values, or `None` when there are none.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let mut range: Option<Range> = None;
        for v in values.into_iter().filter(|v| v.is_finite()) {
            range = Some(match range {
                None => Range { min: v, max: v },
                Some(r) => Range {
                    min: r.min.min(v),
                    max: r.max.max(v),
                },
            });
        }
        range.map(|r| {
            if r.max - r.min < 1e-12 {
                // A flat line: zero sits on the floor of 0..1, anything else mid-height.
                if r.max == 0.0 {
                    Range { min: 0.0, max: 1.0 }
                } else {
                    let half = r.max.abs() * 0.05;
                    Range {
                        min: r.min - half,
                        max: r.max + half,
                    }
                }
            } else {
                r
            }
        })
    }

    /// Position of `v` from 0 (min) to 1 (max).
    pub fn unit(&self, v: f64) -> f64 {
        (v - self.min) / (self.max - self.min)
    }
}

impl Frame {
    pub fn x(&self, unit: f64) -> f64 {
        self.pad + unit * (self.width - 2.0 * self.pad)
    }

    /// SVG's y grows downwards: unit 0 is the bottom.
    pub fn y(&self, unit: f64) -> f64 {
        self.height - self.pad - unit * (self.height - 2.0 * self.pad)
    }
}

/// A line through `(x, y)` points as an SVG `points` attribute, with the ranges used; points
/// that are not finite are left out.
pub fn polyline(points: &[(f64, f64)], frame: Frame) -> Option<(String, Range, Range)> {
    let finite: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let xs = Range::of(finite.iter().map(|p| p.0))?;
    let ys = Range::of(finite.iter().map(|p| p.1))?;
    let text = finite
        .iter()
        .map(|&(x, y)| format!("{:.1},{:.1}", frame.x(xs.unit(x)), frame.y(ys.unit(y))))
        .collect::<Vec<_>>()
        .join(" ");
    Some((text, xs, ys))
}

/// One bar: its box in SVG units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

/// Bars for counts (a histogram), tallest reaching the top; empty counts give no bars.
pub fn bars(counts: &[f64], frame: Frame) -> Vec<Bar> {
    let top = counts
        .iter()
        .copied()
        .filter(|c| c.is_finite())
        .fold(0.0f64, f64::max);
    if counts.is_empty() || top <= 0.0 {
        return Vec::new();
    }
    let slot = (frame.width - 2.0 * frame.pad) / counts.len() as f64;
    counts
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let unit = if c.is_finite() {
                (c / top).max(0.0)
            } else {
                0.0
            };
            let y = frame.y(unit);
            Bar {
                x: frame.pad + i as f64 * slot,
                y,
                width: (slot - 1.0).max(0.5),
                height: frame.y(0.0) - y,
            }
        })
        .collect()
}

/// A scatter point placed in the frame: its index in the data, then x and y.
pub type Placed = (usize, f64, f64);

/// Scatter points scaled into the frame, with the ranges used (non-finite points dropped,
/// their indices kept so labels still match).
pub fn scatter(points: &[(f64, f64)], frame: Frame) -> Option<(Vec<Placed>, Range, Range)> {
    let finite = || {
        points
            .iter()
            .enumerate()
            .filter(|(_, (x, y))| x.is_finite() && y.is_finite())
    };
    let xs = Range::of(finite().map(|(_, p)| p.0))?;
    let ys = Range::of(finite().map(|(_, p)| p.1))?;
    let placed = finite()
        .map(|(i, &(x, y))| (i, frame.x(xs.unit(x)), frame.y(ys.unit(y))))
        .collect();
    Some((placed, xs, ys))
}

/// A text label placed in a chart (`anchor`: SVG's `text-anchor`).
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub x: f64,
    pub y: f64,
    pub anchor: &'static str,
    pub text: String,
}

/// The evaluate view's Pareto chart (L0 against loss recovered): the axis as SVG `points`, its
/// four tick labels, and the points placed.
#[derive(Debug, Clone, PartialEq)]
pub struct Pareto {
    pub axis: String,
    pub ticks: Vec<Label>,
    pub dots: Vec<Placed>,
}

/// The Pareto chart of `(l0, loss recovered)` points, or `None` when no point is finite.
pub fn pareto(points: &[(f64, f64)], frame: Frame) -> Option<Pareto> {
    let (dots, xs, ys) = scatter(points, frame)?;
    let (left, right) = (frame.x(0.0), frame.x(1.0));
    let (bottom, top) = (frame.y(0.0), frame.y(1.0));
    let label = |x, y, anchor, text| Label { x, y, anchor, text };
    Some(Pareto {
        axis: format!("{left:.1},{top:.1} {left:.1},{bottom:.1} {right:.1},{bottom:.1}"),
        ticks: vec![
            label(left, bottom + 14.0, "start", format!("L0 {}", tick(xs.min))),
            label(right, bottom + 14.0, "end", tick(xs.max)),
            label(left - 3.0, top + 4.0, "end", tick(ys.max)),
            label(left - 3.0, bottom, "end", tick(ys.min)),
        ],
        dots,
    })
}

/// How strongly to shade a token for an activation: 0 (none) to 1 (the maximum).
pub fn shade(activation: f32, max: f32) -> f32 {
    if !(activation.is_finite() && max.is_finite()) || max <= 0.0 || activation <= 0.0 {
        0.0
    } else {
        (activation / max).min(1.0)
    }
}

/// A short label for an axis value.
pub fn tick(value: f64) -> String {
    let a = value.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{value:.1e}")
    } else if a >= 100.0 {
        format!("{value:.0}")
    } else if a >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}
