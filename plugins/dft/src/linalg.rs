//! The dense linear algebra the plugin needs, and no more: eigenvalues of real symmetric and of
//! complex Hermitian matrices, and small matrix products.
//!
//! Two symmetric eigensolvers, each where it is best:
//! - [`symmetric_eigen`]: cyclic Jacobi rotations, eigenvalues *and* eigenvectors, accurate to
//!   machine precision; for the Hartree-Fock matrices (a few basis functions).
//! - [`symmetric_eigenvalues`]: Householder reduction to tridiagonal form, then the implicit QL
//!   algorithm with Wilkinson shifts (Wilkinson and Reinsch, *Handbook for Automatic
//!   Computation* II, 1971; the EISPACK routines TRED1 and TQL1); eigenvalues only, in about
//!   (4/3)n³ operations; for tight-binding Hamiltonians of up to a few hundred orbitals.
//!
//! A Hermitian matrix `H = A + iB` has the same eigenvalues as the real symmetric matrix
//! `[[A, -B], [B, A]]`, each twice; [`hermitian_eigenvalues`] uses that.

/// A dense square matrix, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    n: usize,
    data: Vec<f64>,
}

impl Matrix {
    /// The n×n zero matrix.
    pub fn zeros(n: usize) -> Self {
        Matrix { n, data: vec![0.0; n * n] }
    }

    /// The n×n identity.
    pub fn identity(n: usize) -> Self {
        let mut m = Matrix::zeros(n);
        for i in 0..n {
            m[(i, i)] = 1.0;
        }
        m
    }

    /// A matrix from its rows (all of length `rows.len()`).
    pub fn from_rows(rows: &[Vec<f64>]) -> Self {
        let n = rows.len();
        let mut m = Matrix::zeros(n);
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row.len(), n, "a square matrix");
            m.data[i * n..(i + 1) * n].copy_from_slice(row);
        }
        m
    }

    /// Its order.
    pub fn n(&self) -> usize {
        self.n
    }

    /// `self * other`.
    pub fn mul(&self, other: &Matrix) -> Matrix {
        let n = self.n;
        let mut out = Matrix::zeros(n);
        for i in 0..n {
            for k in 0..n {
                let a = self[(i, k)];
                if a == 0.0 {
                    continue;
                }
                for j in 0..n {
                    out.data[i * n + j] += a * other.data[k * n + j];
                }
            }
        }
        out
    }

    /// The transpose.
    pub fn transpose(&self) -> Matrix {
        let n = self.n;
        let mut out = Matrix::zeros(n);
        for i in 0..n {
            for j in 0..n {
                out[(j, i)] = self[(i, j)];
            }
        }
        out
    }

    /// The largest |a_ij - a_ji|.
    pub fn asymmetry(&self) -> f64 {
        let mut worst: f64 = 0.0;
        for i in 0..self.n {
            for j in 0..i {
                worst = worst.max((self[(i, j)] - self[(j, i)]).abs());
            }
        }
        worst
    }
}

impl std::ops::Index<(usize, usize)> for Matrix {
    type Output = f64;
    fn index(&self, (i, j): (usize, usize)) -> &f64 {
        &self.data[i * self.n + j]
    }
}

impl std::ops::IndexMut<(usize, usize)> for Matrix {
    fn index_mut(&mut self, (i, j): (usize, usize)) -> &mut f64 {
        &mut self.data[i * self.n + j]
    }
}

/// Eigenvalues (ascending) and eigenvectors (the columns of the returned matrix, in the same
/// order) of a real symmetric matrix, by cyclic Jacobi rotations.
pub fn symmetric_eigen(a: &Matrix) -> (Vec<f64>, Matrix) {
    let n = a.n();
    let mut m = a.clone();
    let mut v = Matrix::identity(n);
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).map(move |j| (i, j)))
            .filter(|(i, j)| i != j)
            .map(|ij| m[ij] * m[ij])
            .sum();
        let scale: f64 = (0..n).map(|i| m[(i, i)] * m[(i, i)]).sum::<f64>().max(f64::MIN_POSITIVE);
        if off <= 1e-30 * scale || off == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = m[(p, q)];
                if apq.abs() < 1e-300 {
                    continue;
                }
                // Rotation that zeroes m[p][q] (Golub and Van Loan, Algorithm 8.5.1).
                let theta = (m[(q, q)] - m[(p, p)]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let mkp = m[(k, p)];
                    let mkq = m[(k, q)];
                    m[(k, p)] = c * mkp - s * mkq;
                    m[(k, q)] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let mpk = m[(p, k)];
                    let mqk = m[(q, k)];
                    m[(p, k)] = c * mpk - s * mqk;
                    m[(q, k)] = s * mpk + c * mqk;
                }
                for k in 0..n {
                    let vkp = v[(k, p)];
                    let vkq = v[(k, q)];
                    v[(k, p)] = c * vkp - s * vkq;
                    v[(k, q)] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| m[(i, i)].total_cmp(&m[(j, j)]));
    let values = order.iter().map(|&i| m[(i, i)]).collect();
    let mut vectors = Matrix::zeros(n);
    for (col, &i) in order.iter().enumerate() {
        for k in 0..n {
            vectors[(k, col)] = v[(k, i)];
        }
    }
    (values, vectors)
}

/// Eigenvalues (ascending) of a real symmetric matrix: Householder tridiagonalisation, then
/// implicit QL with shifts.
pub fn symmetric_eigenvalues(a: &Matrix) -> Vec<f64> {
    let (mut d, mut e) = tridiagonalise(a.clone());
    tridiagonal_ql(&mut d, &mut e);
    d.sort_by(f64::total_cmp);
    d
}

/// Eigenvalues (ascending, each once) of the Hermitian matrix `re + i·im` (`im` antisymmetric).
pub fn hermitian_eigenvalues(re: &Matrix, im: &Matrix) -> Vec<f64> {
    let n = re.n();
    if im.data.iter().all(|x| *x == 0.0) {
        return symmetric_eigenvalues(re);
    }
    let mut big = Matrix::zeros(2 * n);
    for i in 0..n {
        for j in 0..n {
            big[(i, j)] = re[(i, j)];
            big[(i + n, j + n)] = re[(i, j)];
            big[(i, j + n)] = -im[(i, j)];
            big[(i + n, j)] = im[(i, j)];
        }
    }
    // Each eigenvalue of the Hermitian matrix appears twice in the real embedding.
    symmetric_eigenvalues(&big).into_iter().step_by(2).collect()
}

/// Householder reduction of a symmetric matrix to tridiagonal form: the diagonal and the
/// sub-diagonal (`e[0]` unused, `e[i]` couples rows i-1 and i).
fn tridiagonalise(mut a: Matrix) -> (Vec<f64>, Vec<f64>) {
    let n = a.n();
    let mut e = vec![0.0; n];
    let mut v = vec![0.0; n];
    let mut w = vec![0.0; n];
    for k in 0..n.saturating_sub(2) {
        // The column below the diagonal: x = a[k+1.., k].
        let norm = (k + 1..n).map(|i| a[(i, k)] * a[(i, k)]).sum::<f64>().sqrt();
        if norm == 0.0 {
            e[k + 1] = 0.0;
            continue;
        }
        let x0 = a[(k + 1, k)];
        let alpha = if x0 > 0.0 { -norm } else { norm };
        // v = x - alpha e1, normalised; H = I - 2 v vᵀ maps x to alpha e1.
        for i in k + 1..n {
            v[i] = a[(i, k)];
        }
        v[k + 1] -= alpha;
        let vnorm = (k + 1..n).map(|i| v[i] * v[i]).sum::<f64>().sqrt();
        if vnorm == 0.0 {
            e[k + 1] = x0;
            continue;
        }
        for x in &mut v[k + 1..n] {
            *x /= vnorm;
        }
        // p = A v over the trailing block; w = p - (vᵀp) v; A ← A - 2 v wᵀ - 2 w vᵀ.
        for (i, wi) in w.iter_mut().enumerate().skip(k + 1) {
            let row = &a.data[i * n + k + 1..i * n + n];
            *wi = row.iter().zip(&v[k + 1..n]).map(|(x, y)| x * y).sum();
        }
        let vp: f64 = (k + 1..n).map(|i| v[i] * w[i]).sum();
        for i in k + 1..n {
            w[i] -= vp * v[i];
        }
        for i in k + 1..n {
            let (vi, wi) = (v[i], w[i]);
            let row = &mut a.data[i * n..i * n + n];
            for j in k + 1..n {
                row[j] -= 2.0 * (vi * w[j] + wi * v[j]);
            }
        }
        e[k + 1] = alpha;
    }
    if n >= 2 {
        e[n - 1] = a[(n - 1, n - 2)];
    }
    let d = (0..n).map(|i| a[(i, i)]).collect();
    (d, e)
}

/// Eigenvalues of a symmetric tridiagonal matrix (diagonal `d`, sub-diagonal `e` as returned by
/// [`tridiagonalise`]) by the implicit QL algorithm; `d` is overwritten with them, unsorted.
fn tridiagonal_ql(d: &mut [f64], e: &mut [f64]) {
    let n = d.len();
    if n < 2 {
        return;
    }
    for i in 1..n {
        e[i - 1] = e[i];
    }
    e[n - 1] = 0.0;
    for l in 0..n {
        let mut iterations = 0;
        loop {
            // Find a negligible off-diagonal element to split the matrix at.
            let mut m = l;
            while m + 1 < n {
                let dd = d[m].abs() + d[m + 1].abs();
                if e[m].abs() <= f64::EPSILON * dd {
                    break;
                }
                m += 1;
            }
            if m == l {
                break;
            }
            iterations += 1;
            if iterations > 60 {
                break;
            }
            let mut g = (d[l + 1] - d[l]) / (2.0 * e[l]);
            let mut r = g.hypot(1.0);
            g = d[m] - d[l] + e[l] / (g + if g >= 0.0 { r.abs() } else { -r.abs() });
            let (mut s, mut c, mut p) = (1.0, 1.0, 0.0);
            let mut underflow = false;
            for i in (l..m).rev() {
                let f = s * e[i];
                let b = c * e[i];
                r = f.hypot(g);
                e[i + 1] = r;
                if r == 0.0 {
                    d[i + 1] -= p;
                    e[m] = 0.0;
                    underflow = true;
                    break;
                }
                s = f / r;
                c = g / r;
                g = d[i + 1] - p;
                r = (d[i] - g) * s + 2.0 * c * b;
                p = s * r;
                d[i + 1] = g + p;
                g = c * r - b;
            }
            if underflow {
                continue;
            }
            d[l] -= p;
            e[l] = g;
            e[m] = 0.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn random_symmetric(n: usize, seed: u64) -> Matrix {
        let mut rng = SplitMix64::new(seed, 0);
        let mut m = Matrix::zeros(n);
        for i in 0..n {
            for j in 0..=i {
                let x = rng.range(-1.0, 1.0);
                m[(i, j)] = x;
                m[(j, i)] = x;
            }
        }
        m
    }

    #[test]
    fn jacobi_diagonalises_and_its_vectors_are_orthonormal() {
        let a = random_symmetric(9, 1);
        let (values, v) = symmetric_eigen(&a);
        let d = v.transpose().mul(&a).mul(&v);
        for i in 0..9 {
            for j in 0..9 {
                let expected = if i == j { values[i] } else { 0.0 };
                assert!((d[(i, j)] - expected).abs() < 1e-12, "({i},{j}) {}", d[(i, j)]);
            }
        }
        let vtv = v.transpose().mul(&v);
        assert!((0..9).all(|i| (vtv[(i, i)] - 1.0).abs() < 1e-12));
        assert!(values.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn householder_ql_agrees_with_jacobi() {
        for (n, seed) in [(1, 3), (2, 4), (3, 5), (17, 6), (40, 7)] {
            let a = random_symmetric(n, seed);
            let (jacobi, _) = symmetric_eigen(&a);
            let ql = symmetric_eigenvalues(&a);
            for (x, y) in jacobi.iter().zip(&ql) {
                assert!((x - y).abs() < 1e-11, "n={n}: {x} vs {y}");
            }
        }
    }

    #[test]
    fn a_hermitian_matrix_has_the_eigenvalues_of_its_closed_form() {
        // [[a, b - ic], [b + ic, d]]: λ = (a+d)/2 ± sqrt(((a-d)/2)² + b² + c²).
        let (a, b, c, d) = (0.3, -0.7, 1.1, 2.0);
        let re = Matrix::from_rows(&[vec![a, b], vec![b, d]]);
        let im = Matrix::from_rows(&[vec![0.0, -c], vec![c, 0.0]]);
        let values = hermitian_eigenvalues(&re, &im);
        let root = (((a - d) / 2.0f64).powi(2) + b * b + c * c).sqrt();
        assert_eq!(values.len(), 2);
        assert!((values[0] - ((a + d) / 2.0 - root)).abs() < 1e-13);
        assert!((values[1] - ((a + d) / 2.0 + root)).abs() < 1e-13);
    }

    #[test]
    fn degenerate_and_diagonal_matrices_are_handled() {
        let a = Matrix::from_rows(&[vec![2.0, 0.0, 0.0], vec![0.0, 2.0, 0.0], vec![0.0, 0.0, -1.0]]);
        assert_eq!(symmetric_eigenvalues(&a), vec![-1.0, 2.0, 2.0]);
        assert_eq!(symmetric_eigen(&a).0, vec![-1.0, 2.0, 2.0]);
    }
}
