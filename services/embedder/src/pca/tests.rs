use super::*;

/// Points `base + t · direction` in 5 dimensions.
fn line(ts: &[f32], direction: [f32; 5]) -> Vec<f32> {
    let base = [0.5, -2.0, 1.0, 3.0, 0.25];
    ts.iter()
        .flat_map(|&t| (0..5).map(move |d| base[d] + t * direction[d]))
        .collect()
}

fn assert_close(got: f64, want: f64, tolerance: f64, what: &str) {
    assert!(
        (got - want).abs() <= tolerance,
        "{what}: got {got}, want {want}"
    );
}

#[test]
fn points_on_a_line_are_all_in_the_first_component() {
    let ts = [0.0, 1.0, 2.0, 10.0];
    let direction = [1.0, 2.0, 0.0, -2.0, 0.0];
    // |direction| = 3, the mean of ts is 3.25.
    for direction in [direction, direction.map(|x| -x)] {
        let projection = project(&line(&ts, direction), 5);
        assert_close(projection.explained[0], 1.0, 1e-9, "first share");
        assert_close(projection.explained[1], 0.0, 1e-9, "second share");
        for (point, t) in projection.coordinates.iter().zip(ts) {
            // The sign convention makes the far point (t = 10) positive whichever way the line
            // points.
            assert_close(
                point[0],
                3.0 * (f64::from(t) - 3.25),
                1e-5,
                "first coordinate",
            );
            assert_close(point[1], 0.0, 1e-4, "second coordinate");
        }
    }
}

#[test]
fn a_cross_gives_its_arms_and_their_shares() {
    // Arms of half-length 3 along x and 1 along y, shifted off the origin, in 3 dimensions.
    let points = [[3.0, 0.0], [-3.0, 0.0], [0.0, 1.0], [0.0, -1.0]];
    let vectors: Vec<f32> = points
        .iter()
        .flat_map(|[x, y]| [x + 7.0, y - 1.0, 4.0])
        .collect();
    let projection = project(&vectors, 3);
    assert_close(projection.explained[0], 0.9, 1e-12, "first share");
    assert_close(projection.explained[1], 0.1, 1e-12, "second share");
    // Mirror-symmetric arms: the first point of each pair decides the sign.
    for (got, want) in projection.coordinates.iter().zip(points) {
        assert_close(got[0], want[0].into(), 1e-9, "x");
        assert_close(got[1], want[1].into(), 1e-9, "y");
    }
}

#[test]
fn identical_vectors_have_no_variance() {
    let vectors = [1.5f32, -2.0, 1.5, -2.0, 1.5, -2.0];
    let projection = project(&vectors, 2);
    assert_eq!(projection.coordinates, vec![[0.0; 2]; 3]);
    assert_eq!(projection.explained, [0.0; 2]);
}

#[test]
fn two_points_are_one_component() {
    let projection = project(&[1.0, 1.0, 4.0, 5.0], 2);
    assert_close(projection.explained[0], 1.0, 1e-12, "first share");
    assert_close(projection.explained[1], 0.0, 1e-12, "second share");
    // Both are 2.5 from their mean: the first point decides, and is positive.
    assert_close(projection.coordinates[0][0], 2.5, 1e-9, "first point");
    assert_close(projection.coordinates[1][0], -2.5, 1e-9, "second point");
}

/// `n` pseudo-random points whose coordinates have the given spreads.
fn cloud(n: usize, spreads: &[f64]) -> Vec<f32> {
    let mut seed = 7;
    (0..n)
        .flat_map(|_| random(&mut seed, spreads.len()))
        .zip(spreads.iter().cycle())
        .map(|(x, s)| (x * s + 0.3) as f32)
        .collect()
}

/// The same projection computed another way: eigenvectors of the `width × width` covariance.
fn through_the_covariance(vectors: &[f32], width: usize) -> Projection {
    let centred = centre(vectors, width);
    let mut covariance = vec![0f64; width * width];
    for row in centred.chunks_exact(width) {
        for a in 0..width {
            for b in 0..width {
                covariance[a * width + b] += row[a] * row[b];
            }
        }
    }
    let total: f64 = (0..width).map(|a| covariance[a * width + a]).sum();
    let (values, axes) = jacobi(covariance, width);
    let mut coordinates = vec![[0.0; 2]; centred.len() / width];
    for k in 0..2 {
        let axis: Vec<f64> = axes.iter().map(|row| row[k]).collect();
        let mut scores: Vec<f64> = centred.chunks_exact(width).map(|r| dot(r, &axis)).collect();
        fix_sign(&mut scores);
        coordinates
            .iter_mut()
            .zip(scores)
            .for_each(|(c, s)| c[k] = s);
    }
    Projection {
        coordinates,
        explained: [values[0] / total, values[1] / total],
    }
}

#[test]
fn matches_the_covariance_route_with_more_points_than_the_block() {
    // Well separated components, then a first and second of nearly the same variance.
    for spreads in [
        [5.0, 3.0, 1.0, 0.5, 0.2, 0.1],
        [2.0, 1.98, 1.0, 0.9, 0.8, 0.1],
    ] {
        let vectors = cloud(40, &spreads);
        let got = project(&vectors, 6);
        let want = through_the_covariance(&vectors, 6);
        for k in 0..2 {
            assert_close(got.explained[k], want.explained[k], 1e-9, "share");
        }
        for (g, w) in got.coordinates.iter().zip(&want.coordinates) {
            assert_close(g[0], w[0], 1e-6, "first coordinate");
            assert_close(g[1], w[1], 1e-6, "second coordinate");
        }
        assert!(got.explained[0] >= got.explained[1]);
    }
}

#[test]
fn jacobi_diagonalises_a_symmetric_matrix() {
    let m = 5;
    let mut seed = 3;
    let r = random(&mut seed, m * m);
    let a: Vec<f64> = (0..m * m).map(|i| r[i] + r[(i % m) * m + i / m]).collect();
    let (values, v) = jacobi(a.clone(), m);
    assert!(values.windows(2).all(|w| w[0] >= w[1]), "{values:?}");
    for i in 0..m {
        for j in 0..m {
            let rebuilt: f64 = (0..m).map(|k| v[i][k] * values[k] * v[j][k]).sum();
            assert_close(rebuilt, a[i * m + j], 1e-12, "V D Vᵀ");
            let gram: f64 = (0..m).map(|k| v[k][i] * v[k][j]).sum();
            assert_close(gram, f64::from(u8::from(i == j)), 1e-12, "Vᵀ V");
        }
    }
}

#[test]
fn the_sign_makes_the_largest_coordinate_positive_and_the_first_of_equals_decides() {
    let mut v = vec![0.1, -0.9, 0.5];
    fix_sign(&mut v);
    assert_eq!(v, vec![-0.1, 0.9, -0.5]);
    let mut v = vec![-0.5, 0.2, 0.5];
    fix_sign(&mut v);
    assert_eq!(v, vec![0.5, -0.2, -0.5]);
}
