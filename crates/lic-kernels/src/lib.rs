//! Numeric kernels for lic's decoder, behind safe functions.
//!
//! The synthesis (`lic::model::synthesis`) spends nearly all its time in matrix products.
//! The rnn decoder's GRU gates ([`gru_update`]) are its next largest part.
//! The `gemm` crate (also candle's CPU backend) has fast SIMD kernels chosen at run time but
//! only a raw-pointer interface; this crate checks the shapes once and is the one place in
//! the decoder that calls it, so `lic` itself keeps `forbid(unsafe_code)`.
//!
//! The integer context networks of the entropy model (`lic_entropy::params`) multiply i32
//! weights by small integers into i64 sums, which the baseline x86-64 target (SSE2) can only
//! do one at a time; [`dot_i32`] and [`axpy_i32`] are also compiled for AVX2 and SSE4.1 and
//! pick the best at run time (`multiversion`). Integer sums do not depend on the order or
//! the width of the additions, so every variant gives the same result.
#![deny(missing_docs)]
#![deny(unsafe_code)]

/// `dst (m × n) += a (m × k) · b (k × n)`, every matrix row-major and contiguous.
///
/// Runs on the calling thread. Each output value is a sum over `k` whose order depends only
/// on the shapes and on the SIMD kernel this CPU selects, so equal inputs give equal outputs
/// whichever thread calls.
///
/// # Panics
/// When a slice's length is not the product of its dimensions.
pub fn matmul_add(dst: &mut [f32], a: &[f32], b: &[f32], m: usize, k: usize, n: usize) {
    product(dst, a, b, m, k, n, true);
}

/// `dst (m × n) = a (m × k) · b (k × n)`: [`matmul_add`] without reading `dst`, so a
/// caller need not zero it first. Each value is the same sum in the same order as
/// [`matmul_add`] onto zeros.
///
/// # Panics
/// When a slice's length is not the product of its dimensions.
pub fn matmul(dst: &mut [f32], a: &[f32], b: &[f32], m: usize, k: usize, n: usize) {
    product(dst, a, b, m, k, n, false);
}

/// `dst = a·b`, plus `dst` when `add`.
fn product(dst: &mut [f32], a: &[f32], b: &[f32], m: usize, k: usize, n: usize, add: bool) {
    assert_eq!(dst.len(), m * n, "dst is not {m}×{n}");
    assert_eq!(a.len(), m * k, "a is not {m}×{k}");
    assert_eq!(b.len(), k * n, "b is not {k}×{n}");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !add {
            dst.fill(0.0);
        }
        return;
    }
    #[allow(unsafe_code)]
    // SAFETY: the three slices hold exactly the m×n, m×k and k×n row-major matrices the
    // strides below describe (checked above), so every element gemm reads or writes is in
    // bounds; `dst` is a unique borrow, so it overlaps neither input; `Parallelism::None`
    // keeps all work on this thread, within the borrows' lifetime. With `read_dst` false
    // gemm writes every element of `dst` without reading it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            add,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            if add { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// tanh as a rational function (odd degree-13 numerator, degree-6 denominator in x²), within
/// a few units in the last place of f32 on [−7.9, 7.9] and ±1 beyond; branch-free, so the
/// loops that call it vectorize. The same plain multiplies and adds on every target (no
/// fused multiply-add), so every CPU gets the same value.
#[inline]
// The coefficients as fitted; f32 rounds them, the same on every target.
#[allow(clippy::excessive_precision)]
pub fn tanh_fast(x: f32) -> f32 {
    let x = x.clamp(-7.905_311, 7.905_311);
    let x2 = x * x;
    let mut p = -2.760_768_5e-16f32;
    p = p * x2 + 2.000_187_9e-13;
    p = p * x2 - 8.604_671_5e-11;
    p = p * x2 + 5.122_297e-8;
    p = p * x2 + 1.485_722_4e-5;
    p = p * x2 + 6.372_619_3e-4;
    p = p * x2 + 4.893_524_6e-3;
    let mut q = 1.198_258_4e-6f32;
    q = q * x2 + 1.185_347_1e-4;
    q = q * x2 + 2.268_434_6e-3;
    q = q * x2 + 4.893_525_2e-3;
    x * p / q
}

/// The GRU update of one channel's positions in place: with the z, r and candidate
/// pre-activations of the input path `x` and of the state path `h` (each at least as long
/// as `state`) and the state path's biases `hb`,
/// `z = σ(x₀ + h₀ + hb₀)`, `r = σ(x₁ + h₁ + hb₁)`, `c = tanh(x₂ + r·(h₂ + hb₂))`,
/// `state = c + z·(state − c)`, with `σ(v) = ½·tanh(v/2) + ½` and [`tanh_fast`].
///
/// Compiled for AVX2 beside the baseline (wider vectors of the same operations, no fused
/// multiply-add), so the values do not depend on the variant the CPU picks.
#[multiversion::multiversion(targets("x86_64+avx2"))]
pub fn gru_update(x: [&[f32]; 3], h: [&[f32]; 3], hb: [f32; 3], state: &mut [f32]) {
    let ([zx, rx, nx], [zh, rh, nh]) = (x, h);
    let p = state.len();
    let (zx, rx, nx, zh, rh, nh) = (&zx[..p], &rx[..p], &nx[..p], &zh[..p], &rh[..p], &nh[..p]);
    for i in 0..p {
        let z = 0.5 * tanh_fast(0.5 * (zx[i] + (zh[i] + hb[0]))) + 0.5;
        let r = 0.5 * tanh_fast(0.5 * (rx[i] + (rh[i] + hb[1]))) + 0.5;
        let cand = tanh_fast(nx[i] + r * (nh[i] + hb[2]));
        state[i] = cand + z * (state[i] - cand);
    }
}

/// `Σ a[i] · b[i]` in i64, over the shorter of the two slices; the caller keeps the sum
/// within i64 (as the plain sum would have to).
#[multiversion::multiversion(targets("x86_64+avx2", "x86_64+sse4.1"))]
pub fn dot_i32(a: &[i32], b: &[i32]) -> i64 {
    a.iter().zip(b).map(|(&x, &y)| x as i64 * y as i64).sum()
}

/// `acc[i] += col[i] · v` in i64, over the shorter of the two slices.
#[multiversion::multiversion(targets("x86_64+avx2", "x86_64+sse4.1"))]
pub fn axpy_i32(acc: &mut [i64], col: &[i32], v: i32) {
    for (a, &c) in acc.iter_mut().zip(col) {
        *a += c as i64 * v as i64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_kernels_match_the_definition() {
        for n in [0usize, 1, 3, 8, 17, 64, 333] {
            let a: Vec<i32> = (0..n)
                .map(|i| ((i as i64 * 7919 % 65521) as i32 - 32760) << (i % 16))
                .collect();
            let b: Vec<i32> = (0..n)
                .map(|i| (i as i32 * 31 % (1 << 24)) - (1 << 23))
                .collect();
            let want: i64 = a.iter().zip(&b).map(|(&x, &y)| x as i64 * y as i64).sum();
            assert_eq!(dot_i32(&a, &b), want);
            for v in [-15, 0, 1, 15, i32::MIN, i32::MAX] {
                let mut acc: Vec<i64> = (0..n as i64).map(|i| i * 1000 - 7).collect();
                let want: Vec<i64> = acc
                    .iter()
                    .zip(&a)
                    .map(|(&s, &x)| s + x as i64 * v as i64)
                    .collect();
                axpy_i32(&mut acc, &a, v);
                assert_eq!(acc, want);
            }
        }
    }

    #[test]
    fn gru_update_is_the_gru_formula() {
        let p = 37;
        let val = |i: usize, s: usize| ((i * s % 97) as f32 - 48.0) / 12.0;
        let (x, h): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (
            (0..3)
                .map(|g| (0..p).map(|i| val(i, 7 + g)).collect())
                .collect(),
            (0..3)
                .map(|g| (0..p).map(|i| val(i, 11 + g)).collect())
                .collect(),
        );
        let hb = [0.25, -0.5, 0.75];
        let start: Vec<f32> = (0..p).map(|i| val(i, 13) / 4.0).collect();
        let mut state = start.clone();
        gru_update([&x[0], &x[1], &x[2]], [&h[0], &h[1], &h[2]], hb, &mut state);
        let sigmoid = |v: f64| 1.0 / (1.0 + (-v).exp());
        for i in 0..p {
            let (xi, hi) = (
                |g: usize| x[g][i] as f64,
                |g: usize| h[g][i] as f64 + hb[g] as f64,
            );
            let z = sigmoid(xi(0) + hi(0));
            let r = sigmoid(xi(1) + hi(1));
            let c = (xi(2) + r * hi(2)).tanh();
            let want = (1.0 - z) * c + z * start[i] as f64;
            assert!(
                (state[i] as f64 - want).abs() < 1e-5,
                "[{i}] {} vs {want}",
                state[i]
            );
        }
    }

    /// The product by the definition, in f64.
    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut out = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k)
                    .map(|t| a[i * k + t] as f64 * b[t * n + j] as f64)
                    .sum();
            }
        }
        out
    }

    #[test]
    fn matches_the_definition_and_adds_to_dst() {
        // Odd sizes, past any kernel's block size in each dimension.
        for (m, k, n) in [(1, 1, 1), (3, 5, 7), (17, 33, 9), (70, 130, 45)] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 30.0)
                .collect();
            // `matmul` ignores what `dst` held; `matmul_add` adds to it.
            let mut over = vec![f32::NAN; m * n];
            matmul(&mut over, &a, &b, m, k, n);
            let mut onto_zeros = vec![0f32; m * n];
            matmul_add(&mut onto_zeros, &a, &b, m, k, n);
            assert_eq!(over, onto_zeros, "{m}×{k}×{n}");
            let mut dst: Vec<f32> = (0..m * n).map(|i| i as f32).collect();
            matmul_add(&mut dst, &a, &b, m, k, n);
            for (i, (got, want)) in dst.iter().zip(naive(&a, &b, m, k, n)).enumerate() {
                let want = want + i as f64;
                assert!(
                    (*got as f64 - want).abs() < 1e-4 * (1.0 + want.abs()),
                    "{m}×{k}×{n} [{i}]"
                );
            }
        }
    }

    #[test]
    #[should_panic(expected = "b is not")]
    fn refuses_a_wrong_shape() {
        let mut dst = vec![0f32; 4];
        matmul_add(&mut dst, &[0.0; 4], &[0.0; 3], 2, 2, 2);
    }
}
