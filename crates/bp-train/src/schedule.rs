//! Learning-rate schedules.

use std::f64::consts::PI;

/// How the learning rate changes over a run of `total` iterations.
///
/// ```
/// use bp_train::Schedule;
///
/// assert_eq!(Schedule::Constant.lr(0.1, 900, 1000), 0.1);
/// // Step: ×0.1 from half-way, ×0.01 from three quarters.
/// assert_eq!(Schedule::Step.lr(0.1, 499, 1000), 0.1);
/// assert!((Schedule::Step.lr(0.1, 500, 1000) - 0.01).abs() < 1e-15);
/// assert!((Schedule::Step.lr(0.1, 750, 1000) - 0.001).abs() < 1e-15);
/// // Cosine: from lr at the first iteration down towards 0 at the end.
/// assert_eq!(Schedule::Cosine.lr(0.1, 0, 1000), 0.1);
/// assert!((Schedule::Cosine.lr(0.1, 500, 1000) - 0.05).abs() < 1e-15);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Schedule {
    /// The same rate throughout (the book's).
    #[default]
    Constant,
    /// Step decay: the rate times 0.1 from half-way through the run, times 0.01 from three quarters.
    Step,
    /// Cosine annealing: `lr · ½ (1 + cos(π · iter / total))`, from `lr` at the first iteration to
    /// nearly 0 at the last.
    Cosine,
}

impl Schedule {
    /// Every schedule, in the order the command line lists them.
    pub const ALL: [Schedule; 3] = [Schedule::Constant, Schedule::Step, Schedule::Cosine];

    /// The learning rate for iteration `iter` (counted from 0) of `total`, from the base rate `lr`.
    pub fn lr(self, lr: f64, iter: usize, total: usize) -> f64 {
        let total = total.max(1);
        match self {
            Schedule::Constant => lr,
            Schedule::Step => {
                // iter / total >= 1/2 and >= 3/4, in integers wide enough for any usize.
                let (iter, total) = (iter as u128, total as u128);
                if 4 * iter >= 3 * total {
                    lr * 0.01
                } else if 2 * iter >= total {
                    lr * 0.1
                } else {
                    lr
                }
            }
            Schedule::Cosine => lr * 0.5 * (1.0 + (PI * iter as f64 / total as f64).cos()),
        }
    }

    /// The lower-case name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Schedule::Constant => "constant",
            Schedule::Step => "step",
            Schedule::Cosine => "cosine",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_decreases_monotonically_and_stays_positive() {
        let total = 100;
        let rates: Vec<f64> = (0..total)
            .map(|i| Schedule::Cosine.lr(1.0, i, total))
            .collect();
        assert!(rates.windows(2).all(|w| w[1] < w[0]));
        assert!(rates[total - 1] > 0.0 && rates[total - 1] < 1e-3);
    }

    #[test]
    fn step_has_two_drops() {
        let rates: Vec<f64> = (0..8).map(|i| Schedule::Step.lr(1.0, i, 8)).collect();
        assert_eq!(rates, [1.0, 1.0, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01]);
        // A one-iteration run keeps the base rate.
        assert_eq!(Schedule::Step.lr(1.0, 0, 1), 1.0);
    }

    /// The longest runs a usize can count drop at the same fractions, without overflowing.
    #[test]
    fn the_longest_runs_have_the_same_drops() {
        let total = usize::MAX;
        let at = |iter| Schedule::Step.lr(1.0, iter, total);
        assert_eq!(at(total / 2 - 1), 1.0);
        assert_eq!(at(total / 2 + 1), 0.1);
        assert_eq!(at(total - total / 4 - 1), 0.1);
        assert_eq!(at(total - total / 4), 0.01);
        assert_eq!(at(total - 1), 0.01);
        assert!(Schedule::Cosine.lr(1.0, total - 1, total) < 1e-30);
    }
}
