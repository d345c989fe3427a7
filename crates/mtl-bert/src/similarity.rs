//! Cosine similarity of sentence embeddings, as sentence-transformers' `cos_sim` computes it.

/// The cosine similarity of every pair of vectors, accumulated in f64. A zero vector has
/// similarity 0 with everything, itself included (as sentence-transformers' `cos_sim`).
pub fn cosine_matrix(vectors: &[&[f32]]) -> Vec<Vec<f32>> {
    let norms: Vec<f64> = vectors
        .iter()
        .map(|v| {
            v.iter()
                .map(|&x| f64::from(x) * f64::from(x))
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    let n = vectors.len();
    let mut matrix = vec![vec![0.0f32; n]; n];
    for i in 0..n {
        for j in i..n {
            let dot: f64 = vectors[i]
                .iter()
                .zip(vectors[j])
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum();
            let denominator = norms[i] * norms[j];
            let cosine = if denominator > 0.0 {
                (dot / denominator) as f32
            } else {
                0.0
            };
            matrix[i][j] = cosine;
            matrix[j][i] = cosine;
        }
    }
    matrix
}

/// Scales `row` to unit L2 norm in place, as [`EncodeOptions::normalize`](crate::EncodeOptions)
/// does on the device (a zero row stays zero: the norm is clamped to 1e-12).
pub fn l2_normalize_row(row: &mut [f32]) {
    let norm = row.iter().map(|&x| x * x).sum::<f32>().sqrt().max(1e-12);
    row.iter_mut().for_each(|x| *x /= norm);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_is_symmetric_with_unit_diagonal() {
        let a = [1.0f32, 0.0, 0.0];
        let b = [1.0f32, 1.0, 0.0];
        let c = [-2.0f32, 0.0, 0.0];
        let zero = [0.0f32; 3];
        let m = cosine_matrix(&[&a, &b, &c, &zero]);
        assert!((m[0][0] - 1.0).abs() < 1e-7 && (m[1][1] - 1.0).abs() < 1e-7);
        assert!((m[0][1] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-7);
        assert_eq!(m[0][1], m[1][0]);
        assert!((m[0][2] + 1.0).abs() < 1e-7);
        assert_eq!(m[3], vec![0.0; 4]);
    }

    #[test]
    fn rows_normalise_to_unit_length() {
        let mut row = [3.0f32, 4.0];
        l2_normalize_row(&mut row);
        assert_eq!(row, [0.6, 0.8]);
        let mut zero = [0.0f32; 2];
        l2_normalize_row(&mut zero);
        assert_eq!(zero, [0.0, 0.0]);
    }
}
