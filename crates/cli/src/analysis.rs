//! Numbers the CLI derives from responses: the softmax of a logit row sorted by rank, and the
//! power law fitted to it (the essay's straight line on a log-log plot).

/// The probabilities of a logit row, most likely first.
pub fn ranked_probabilities(logits: &[f32]) -> Vec<f64> {
    let max = logits
        .iter()
        .copied()
        .filter(|l| l.is_finite())
        .fold(f32::NEG_INFINITY, f32::max);
    let mut p: Vec<f64> = logits
        .iter()
        .map(|&l| {
            if l.is_finite() {
                ((l - max) as f64).exp()
            } else {
                0.0
            }
        })
        .collect();
    let total: f64 = p.iter().sum();
    p.iter_mut().for_each(|x| *x /= total);
    p.sort_unstable_by(|a, b| b.total_cmp(a));
    p
}

/// `p ≈ 10^intercept · rank^exponent`, fitted by least squares in log-log space.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerLaw {
    pub exponent: f64,
    pub intercept: f64,
    /// Share of the variance of log p the line explains.
    pub r2: f64,
    /// The fit used ranks 1..=max_rank.
    pub max_rank: usize,
}

/// Points fitted per decade of rank: log-spaced, so that the many tail ranks do not outweigh
/// the few head ones (a plain fit over every rank would be a fit of the tail alone).
const POINTS_PER_DECADE: f64 = 20.0;

/// Fits a power law to `p` (most likely first) over ranks 1..=`max_rank`, skipping zeros.
/// `None` with fewer than two usable points.
pub fn fit_power_law(p: &[f64], max_rank: usize) -> Option<PowerLaw> {
    let max_rank = max_rank.min(p.len());
    let decades = (max_rank as f64).log10();
    let steps = (decades * POINTS_PER_DECADE).ceil() as usize;
    let mut ranks: Vec<usize> = (0..=steps)
        .map(|k| 10f64.powf(k as f64 / POINTS_PER_DECADE).round() as usize)
        .filter(|&r| (1..=max_rank).contains(&r))
        .collect();
    ranks.dedup();
    let points: Vec<(f64, f64)> = ranks
        .iter()
        .filter(|&&r| p[r - 1] > 0.0)
        .map(|&r| ((r as f64).log10(), p[r - 1].log10()))
        .collect();
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let syy: f64 = points.iter().map(|p| (p.1 - my).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let exponent = sxy / sxx;
    let r2 = if syy == 0.0 {
        1.0
    } else {
        (sxy * sxy) / (sxx * syy)
    };
    Some(PowerLaw {
        exponent,
        intercept: my - exponent * mx,
        r2,
        max_rank,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sorted_by_rank() {
        let p = ranked_probabilities(&[0.0, 2f32.ln(), f32::NEG_INFINITY, 0.0]);
        assert_eq!(p.len(), 4);
        assert!((p[0] - 0.5).abs() < 1e-9 && (p[1] - 0.25).abs() < 1e-9);
        assert_eq!(p[3], 0.0);
    }

    #[test]
    fn an_exact_power_law_is_recovered() {
        // p ∝ 1/r (Zipf), normalised over 50,000 ranks.
        let raw: Vec<f64> = (1..=50_000).map(|r| 1.0 / r as f64).collect();
        let total: f64 = raw.iter().sum();
        let p: Vec<f64> = raw.iter().map(|x| x / total).collect();
        let fit = fit_power_law(&p, 10_000).unwrap();
        assert!((fit.exponent + 1.0).abs() < 1e-9, "{fit:?}");
        assert!((fit.intercept - (1.0 / total).log10()).abs() < 1e-9);
        assert!((fit.r2 - 1.0).abs() < 1e-9);
        assert_eq!(fit.max_rank, 10_000);
    }

    #[test]
    fn too_few_points_give_no_fit() {
        assert_eq!(fit_power_law(&[1.0], 10), None);
        assert_eq!(fit_power_law(&[1.0, 0.0, 0.0], 10), None);
    }
}
