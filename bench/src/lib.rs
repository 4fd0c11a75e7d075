//! Shared pieces of the load generators in `src/bin/` (see BENCHMARKS.md for what each measures).

/// The `p`-th percentile (0-100) of sorted samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentiles_of_a_known_list() {
        let v: Vec<f64> = (1..=101).map(f64::from).collect();
        assert_eq!(super::percentile(&v, 50.0), 51.0);
        assert_eq!(super::percentile(&v, 99.0), 100.0);
        assert_eq!(super::percentile(&v, 100.0), 101.0);
    }
}
