//! Alpha diversity of one sample from the abundances of its units (OTUs or unique sequences).
//!
//! With counts nᵢ > 0 of S observed units, N = Σ nᵢ, pᵢ = nᵢ / N, F₁ units seen once and F₂
//! seen twice:
//!
//! - observed richness: S;
//! - Shannon entropy, natural logarithm (nats): H' = −Σ pᵢ ln pᵢ (Shannon 1948);
//! - Simpson's index as 1 − D with D = Σ pᵢ² (Simpson 1949), the probability that two reads
//!   drawn with replacement belong to different units;
//! - Chao1, bias-corrected: S + F₁(F₁ − 1) / (2(F₂ + 1)) (Chao 1987; the bias-corrected form of
//!   Chao 2005, defined also when F₂ = 0);
//! - Good's coverage: 1 − F₁ / N (Good 1953).
//!
//! These are the definitions of scikit-bio's `shannon` (with its default natural logarithm),
//! `simpson`, `chao1(bias_corrected=True)` and `goods_coverage`, against which they are tested.

use serde::Serialize;

/// Diversity of one sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Diversity {
    /// Total abundance N.
    pub total_abundance: u64,
    /// Observed richness S.
    pub observed: usize,
    /// Shannon entropy H′ in nats (natural logarithm).
    pub shannon: f64,
    /// Simpson's 1 − D.
    pub simpson: f64,
    /// Bias-corrected Chao1.
    pub chao1: f64,
    /// Good's coverage.
    pub goods_coverage: f64,
    /// F₁ and F₂.
    pub singletons: usize,
    pub doubletons: usize,
}

/// Diversity of the sample with these unit abundances (zeros are ignored). `None` when the
/// sample is empty.
pub fn diversity(abundances: &[u64]) -> Option<Diversity> {
    let present: Vec<u64> = abundances.iter().copied().filter(|&n| n > 0).collect();
    let total: u64 = present.iter().sum();
    if total == 0 {
        return None;
    }
    let n = total as f64;
    let (mut shannon, mut dominance) = (0.0, 0.0);
    for &count in &present {
        let p = count as f64 / n;
        shannon -= p * p.ln();
        dominance += p * p;
    }
    let singletons = present.iter().filter(|&&c| c == 1).count();
    let doubletons = present.iter().filter(|&&c| c == 2).count();
    let (f1, f2) = (singletons as f64, doubletons as f64);
    Some(Diversity {
        total_abundance: total,
        observed: present.len(),
        shannon,
        simpson: 1.0 - dominance,
        chao1: present.len() as f64 + f1 * (f1 - 1.0) / (2.0 * (f2 + 1.0)),
        goods_coverage: 1.0 - f1 / n,
        singletons,
        doubletons,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_even_community_has_shannon_ln_s_and_simpson_1_minus_1_over_s() {
        for s in [1usize, 2, 5, 40] {
            let d = diversity(&vec![7; s]).unwrap();
            assert!((d.shannon - (s as f64).ln()).abs() < 1e-12);
            assert!((d.simpson - (1.0 - 1.0 / s as f64)).abs() < 1e-12);
            assert_eq!(d.chao1, s as f64, "no singletons: Chao1 is S");
            assert_eq!(d.goods_coverage, 1.0);
        }
    }

    #[test]
    fn chao1_and_coverage_follow_the_singletons() {
        // S = 5, F1 = 2, F2 = 1: Chao1 = 5 + 2·1/(2·2) = 5.5; N = 12, coverage = 1 − 2/12.
        let d = diversity(&[1, 1, 2, 3, 5, 0]).unwrap();
        assert_eq!((d.observed, d.singletons, d.doubletons, d.total_abundance), (5, 2, 1, 12));
        assert!((d.chao1 - 5.5).abs() < 1e-12);
        assert!((d.goods_coverage - (1.0 - 2.0 / 12.0)).abs() < 1e-12);
        // Shannon of (1,1,2,3,5)/12 by hand.
        let expected: f64 =
            [1.0, 1.0, 2.0, 3.0, 5.0].iter().map(|c: &f64| -(c / 12.0) * (c / 12.0).ln()).sum();
        assert!((d.shannon - expected).abs() < 1e-12);
    }

    #[test]
    fn an_empty_sample_has_no_diversity() {
        assert_eq!(diversity(&[]), None);
        assert_eq!(diversity(&[0, 0]), None);
    }
}
