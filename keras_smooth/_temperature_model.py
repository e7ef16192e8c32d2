"""One pass over the logits for `fit_temperature`: per-row moments, a certified Taylor model.

The NLL of softmax(beta z) is convex in beta (Guo et al. 2017 fit T = 1 / beta by
minimising it). Around a starting beta0 write beta = beta0 (1 + d) and x = beta0 z.
Per row i, with e_ij = exp(x_ij), everything the search needs is

    S_m(d) = sum_j e_ij x_ij^m exp(d x_ij),   m = 0, 1, 2:

NLL(d) = mean_i [log S_0 - (1 + d) x_iy], its d-derivative mean_i [S_1 / S_0 - x_iy]
and second derivative mean_i [S_2 / S_0 - (S_1 / S_0)^2] (a variance, so >= 0).
One pass computes the raw moments M_m = sum_j e_ij x_ij^m, m <= P (one float64
exp per entry), and in the same pass sum_j exp(z_ij) for the NLL at T = 1. Centred at
c_i = M_1 / M_0 (by the binomial theorem, per row), the moments
mu_k = sum_j e_ij (x_ij - c_i)^k / M_0 give S_m(d) as a Taylor series in d with a
Lagrange remainder that is bounded from mu_P (P is even, so mu_P >= 0):

    |sum_j e (x - c)^m exp(d (x - c)) / M_0 - sum_{k <= P - m} d^k / k! mu_{m+k}|
        <= |d|^(P + 1 - m) / (P + 1 - m)! * W mu_P * exp(|d| W),

W >= |x_ij - c_i| (beta0 times the spread of all of z). Rounding of the moments is
bounded too, so the derivative of the model at any d comes with a rigorous error
bound: if it is certainly negative at d* - h and certainly positive at d* + h, the
minimiser lies in between (the derivative is increasing). Nothing here decides what
to do when a bound fails; the caller then searches with full evaluations.

The logits are not shifted by their row maxima (that reduction and the per-row
subtraction cost as much as three moments): the caller uses this only when
|z| * max(beta, 1) stays far from the float64 exp range.
"""

import math

import numpy as np

FIRST_ORDER = 6  # P of the pass at the sample start (even: the remainder's moment is >= 0)
SECOND_ORDER = 4  # P of a second pass, from the first model's minimiser (d is then tiny)
_U = np.finfo(np.float64).eps / 2  # unit roundoff
_BLOCK_ELEMENTS = 1 << 16  # entries per block of rows: the working arrays stay in cache
_FACTORIAL = np.array([math.factorial(k) for k in range(12)], dtype="float64")


def raw_moments(z, beta0, order, at_one=True):
    """`(order + 2, N)` float64 per-row sums, one pass over the rows of `z` (N, K).

    Rows 0..order: sum_j exp(x_ij) x_ij^m with x = beta0 * z in float64; the last
    row (only `at_one`, else left unset): sum_j exp(z_ij), the softmax normaliser
    at T = 1.
    """
    n, k = z.shape
    block = max(1, _BLOCK_ELEMENTS // k)
    xs, work = (np.empty((min(block, n), k)) for _ in range(2))
    ones = np.ones(k)  # row sums as matrix-vector products (faster than np.sum here)
    sums = np.empty((order + 2, n))
    for start in range(0, n, block):
        rows, size = slice(start, min(start + block, n)), min(block, n - start)
        x, e = xs[:size], work[:size]
        x[...] = z[rows]  # exact float64 copy
        if at_one:
            sums[-1, rows] = np.exp(x, out=e) @ ones
        np.multiply(x, beta0, out=x)
        sums[0, rows] = np.exp(x, out=e) @ ones
        for m in range(1, order + 1):
            sums[m, rows] = np.multiply(e, x, out=e) @ ones
    return sums


class TaylorModel:
    """NLL(beta0 (1 + d)) and its first two d-derivatives near d = 0, with error bounds.

    Args:
        sums: `raw_moments(z, beta0, P)`.
        beta0: the point of the pass.
        mean_true: mean_i z_iy (float64).
        spread: max z - min z over all of `z` (W = beta0 * spread bounds |x - c|).
        bound: max |z| over all of `z` (X = beta0 * bound bounds |x| and |c|).
        k: number of classes (enters the rounding bound of the row sums).
    """

    def __init__(self, sums, beta0, mean_true, spread, bound, k):
        self.order = p = len(sums) - 2
        self.beta0, self.x_true, self.width = beta0, beta0 * mean_true, beta0 * spread
        m0 = sums[0]
        normal = sums[1:p + 1] * (1.0 / m0)  # a_l = M_l / M_0, l >= 1
        c = normal[0].copy()
        # mu_k / k! = sum_l (a_l / l!) ((-c)^(k-l) / (k-l)!): a convolution per row
        normal /= _FACTORIAL[1:p + 1, None]
        shifts = np.empty((p + 1, len(c)))
        shifts[0], shifts[1] = 1.0, -c
        for j in range(2, p + 1):
            np.multiply(shifts[j - 1], shifts[1], out=shifts[j])
        shifts /= _FACTORIAL[:p + 1, None]
        scaled = shifts.copy()
        for order in range(1, p + 1):
            scaled[order:] += normal[order - 1] * shifts[:p + 1 - order]
        scaled[1] = 0.0  # mu_1 = 0 by the choice of c
        self.scaled, self.mean_center = scaled, float(c.mean())
        self.mean_log_m0 = float(np.log(m0).mean())
        x_bound = beta0 * bound
        gamma = 8 * (k + p + 8 + x_bound) * _U
        # rounding of mu_k: <= gamma E[(|c| + |x|)^k] <= gamma (2 X)^k (a global bound)
        self.rounding = gamma * (2 * x_bound) ** np.arange(p + 1.0)
        self.rounding[0] = 2 * gamma
        self.top = (scaled[p] * _FACTORIAL[p] + self.rounding[p]) * self.width
        self.check = 8 * _U * (abs(self.mean_log_m0) + x_bound + abs(self.x_true))

    def _series(self, d, count):
        """Per row, the model's S_0 .. S_(count-1) (centred, / M_0): the series of S_m
        runs to mu_P."""
        p = self.order
        powers = d ** np.arange(p + 1.0)
        return [(powers[:p + 1 - m] * _FACTORIAL[m:p + 1] / _FACTORIAL[:p + 1 - m])
                @ self.scaled[m:] for m in range(count)]

    def _errors(self, d, count):
        """(scalar, factor) per m < count: S_m is off by at most scalar + factor * top.

        Rounding: sum_k |d|^k / k! * rounding_(m+k). Truncation (Lagrange, with
        E|x - c|^(P + 1) <= W mu_P and exp(d (x - c)) <= exp(|d| W)):
        |d|^(P + 1 - m) / (P + 1 - m)! * exp(|d| W) * W mu_P.
        """
        p, a = self.order, abs(d)
        powers = a ** np.arange(p + 2.0)
        growth = math.exp(a * self.width)
        return [(float((powers[:p + 1 - m] / _FACTORIAL[:p + 1 - m]) @ self.rounding[m:]),
                 powers[p + 1 - m] / _FACTORIAL[p + 1 - m] * growth)
                for m in range(count)]
    def derivatives(self, d):
        """(NLL', NLL'') in d at `d`, from the model (no error bound)."""
        s0, s1, s2 = self._series(d, 3)
        r1 = s1 / s0
        grad = self.mean_center + float(r1.mean()) - self.x_true
        return grad, float((s2 / s0).mean() - (r1 * r1).mean())

    def certified_gradient(self, d):
        """(NLL' in d at `d`, a bound on its error), or None when the bound is not finite."""
        s0, s1 = self._series(d, 2)
        (a0, b0), (a1, b1) = self._errors(d, 2)
        e0 = a0 + b0 * self.top
        low = s0 - e0
        if not low.min() > 0:
            return None
        r1 = s1 / s0
        grad = self.mean_center + float(r1.mean()) - self.x_true
        error = float(((a1 + b1 * self.top + np.abs(r1) * e0) / low).mean()) + self.check
        return (grad, error) if np.isfinite(error) else None

    def value(self, d):
        """(NLL at `d`, a bound on its error) from the model, or None."""
        (s0,), ((a0, b0),) = self._series(d, 1), self._errors(d, 1)
        e0 = a0 + b0 * self.top
        low = s0 - e0
        if not low.min() > 0:
            return None
        value = (self.mean_log_m0 + d * self.mean_center + float(np.log(s0).mean())
                 - (1 + d) * self.x_true)
        error = float((e0 / low).mean()) + (1 + abs(d)) * self.check
        return (value, error) if np.isfinite(error) else None
