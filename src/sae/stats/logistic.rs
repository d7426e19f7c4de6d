//! L2-regularised logistic regression, as scikit-learn's `LogisticRegression(C=1.0)` fits it
//! (SAEBench's probes): minimise `0.5 ||w||^2 + C * sum_i logloss(y_i, w . x_i + b)`, the bias
//! unpenalised, by Newton's method with a halving line search.

use super::StatsError;

/// A fitted probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Logistic {
    pub weights: Vec<f64>,
    pub bias: f64,
}

impl Logistic {
    pub fn logit(&self, row: &[f32]) -> f64 {
        self.bias
            + row
                .iter()
                .zip(&self.weights)
                .map(|(&x, w)| f64::from(x) * w)
                .sum::<f64>()
    }

    pub fn predicts(&self, row: &[f32]) -> bool {
        self.logit(row) > 0.0
    }
}

fn log1p_exp(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Fit a probe on `rows` (`[n, d]`, row-major) with labels `labels` and inverse regularisation
/// strength `c`.
pub fn fit_logistic(
    rows: &[f32],
    d: usize,
    labels: &[bool],
    c: f64,
) -> Result<Logistic, StatsError> {
    let n = labels.len();
    if rows.len() != n.saturating_mul(d) {
        return Err(StatsError::Shape {
            what: "probe inputs".into(),
            found: rows.len(),
            rows: n,
            cols: d,
            expected: n.saturating_mul(d),
        });
    }
    let row = |i: usize| &rows[i * d..(i + 1) * d];
    let objective = |model: &Logistic| -> f64 {
        let penalty = 0.5 * model.weights.iter().map(|w| w * w).sum::<f64>();
        let loss: f64 = (0..n)
            .map(|i| {
                let z = model.logit(row(i));
                if labels[i] {
                    log1p_exp(-z)
                } else {
                    log1p_exp(z)
                }
            })
            .sum();
        penalty + c * loss
    };
    let m = d + 1; // the bias last
    let mut model = Logistic {
        weights: vec![0.0; d],
        bias: 0.0,
    };
    let mut current = objective(&model);
    for _ in 0..100 {
        let mut gradient = vec![0.0f64; m];
        let mut hessian = vec![0.0f64; m * m];
        for (j, w) in model.weights.iter().enumerate() {
            gradient[j] = *w;
            hessian[j * m + j] = 1.0;
        }
        hessian[m * m - 1] = 1e-9;
        let mut x = vec![0.0f64; m];
        for (i, &label) in labels.iter().enumerate() {
            for (xj, &v) in x.iter_mut().zip(row(i)) {
                *xj = f64::from(v);
            }
            x[d] = 1.0;
            let p = sigmoid(model.logit(row(i)));
            let residual = c * (p - f64::from(u8::from(label)));
            let weight = c * p * (1.0 - p);
            for a in 0..m {
                gradient[a] += residual * x[a];
                if weight > 0.0 && x[a] != 0.0 {
                    let wa = weight * x[a];
                    for b in 0..=a {
                        hessian[a * m + b] += wa * x[b];
                    }
                }
            }
        }
        for a in 0..m {
            for b in 0..a {
                hessian[b * m + a] = hessian[a * m + b];
            }
        }
        let Some(step) = solve_positive_definite(&hessian, &gradient, m) else {
            break;
        };
        // Newton step, halved until the objective falls.
        let mut scale = 1.0;
        let mut improved = false;
        for _ in 0..30 {
            let trial = Logistic {
                weights: (0..d).map(|j| model.weights[j] - scale * step[j]).collect(),
                bias: model.bias - scale * step[d],
            };
            let value = objective(&trial);
            if value <= current {
                let change = current - value;
                model = trial;
                current = value;
                improved = change > 1e-12 * current.abs().max(1.0);
                break;
            }
            scale *= 0.5;
        }
        if !improved {
            break;
        }
    }
    Ok(model)
}

/// Solve `a x = b` for a symmetric positive definite `a` (`[m, m]`) by Cholesky; `None` when
/// `a` is not positive definite.
fn solve_positive_definite(a: &[f64], b: &[f64], m: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0f64; m * m];
    for i in 0..m {
        for j in 0..=i {
            let sum: f64 = (0..j).map(|k| l[i * m + k] * l[j * m + k]).sum();
            if i == j {
                let v = a[i * m + i] - sum;
                if v <= 0.0 || !v.is_finite() {
                    return None;
                }
                l[i * m + i] = v.sqrt();
            } else {
                l[i * m + j] = (a[i * m + j] - sum) / l[j * m + j];
            }
        }
    }
    let mut y = vec![0.0f64; m];
    for i in 0..m {
        let sum: f64 = (0..i).map(|k| l[i * m + k] * y[k]).sum();
        y[i] = (b[i] - sum) / l[i * m + i];
    }
    let mut x = vec![0.0f64; m];
    for i in (0..m).rev() {
        let sum: f64 = (i + 1..m).map(|k| l[k * m + i] * x[k]).sum();
        x[i] = (y[i] - sum) / l[i * m + i];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    #[test]
    fn the_fit_is_where_the_objectives_gradient_vanishes() {
        let mut rng = SplitMix64::new(5);
        let (n, d) = (300, 3);
        let rows: Vec<f32> = (0..n * d).map(|_| rng.normal()).collect();
        let labels: Vec<bool> = (0..n)
            .map(|i| {
                let r = &rows[i * d..(i + 1) * d];
                f64::from(r[0] - 0.5 * r[1]) + 0.8 * f64::from(rng.normal()) > 0.3
            })
            .collect();
        let c = 1.0;
        let model = fit_logistic(&rows, d, &labels, c).unwrap();
        // Direct: w + C sum (p - y) x = 0 and C sum (p - y) = 0.
        let mut gradient = model.weights.clone();
        gradient.push(0.0);
        for i in 0..n {
            let r = &rows[i * d..(i + 1) * d];
            let residual = c * (sigmoid(model.logit(r)) - f64::from(u8::from(labels[i])));
            for j in 0..d {
                gradient[j] += residual * f64::from(r[j]);
            }
            gradient[d] += residual;
        }
        assert!(gradient.iter().all(|g| g.abs() < 1e-6), "{gradient:?}");
        assert!(model.weights[0] > 0.0 && model.weights[1] < 0.0);
    }

    #[test]
    fn separable_points_are_told_apart_and_bad_shapes_refused() {
        let rows = [-2.0f32, -1.0, 1.0, 2.0];
        let labels = [false, false, true, true];
        let model = fit_logistic(&rows, 1, &labels, 1.0).unwrap();
        assert!(
            rows.iter()
                .zip(labels)
                .all(|(&x, y)| model.predicts(&[x]) == y)
        );
        assert!(fit_logistic(&rows, 3, &labels, 1.0).is_err());
    }
}
