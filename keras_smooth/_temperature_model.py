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
|z| * max(beta, 1) stays far from the float64 exp range, which `checked_moments`
verifies block by block inside the pass (min z read before a block's exps, max z
bounded by the log of the block's T = 1 row sums), so no separate pass reads the range.

How the moments are summed, and their rounding: the exps at beta0 are exp2 of
y = z * fl(beta0 log2 e) (faster than exp), so the pass sums 2^y y^m and scales row m
by (ln 2)^m. It runs in C where `_moments_c.c` was compiled at install (one loop over
each row, glibc's vector exp and exp2; `_compiled`, checked against the NumPy form on
first use), else in NumPy by blocks of rows (`_numpy_pass`, the last moment as a row
dot product, without writing e y^P); the same sums either way, within the same bound.
Against e^x x^m, per term: y ln 2 = x (1 + theta) with |theta| <= 3u (u the unit
roundoff: log2 e, beta0 times it, z times that), so 2^y = e^x e^(x theta) is off by at
most 3|x|u; exp2 is taken to be within 4 ulp, 8u (what NumPy's vectorised exp2 and
glibc's vector exp and exp2 are tested to; 0.7 ulp is measured here for NumPy's, and
tests check the sums against extended precision); y^m adds 3mu, the m products m u,
(ln 2)^m and its product m + 2, the row sum k u. So M_m is within (3 X + k + 5 P + 10) u
of sum_j e |x|^m (X >= |x|), and the centring adds 3 P + 4 roundings and carries the
errors of M_0 and M_l: at most (6 X + 2 k + 8 P + 26) u (2 X)^k for mu_k, inside the
gamma (2 X)^k with
gamma = 8 (X + k + P + 8) u that `TaylorModel` uses (first order; X <= 300 keeps
the second-order terms far inside that factor 8). Terms below 2^-1022 (subnormal,
less precise) are off by less than 2^-1074, nothing against a row sum >= 2^-433.

What is computed where (the error bounds above hold for each form): the centring
is Horner's rule on the exponential generating functions (`_centred_moments`); Newton
on the model starts from the mean-cumulant polynomial of the gradient
(`gradient_coefficients`, no bound needed: only the certificate decides); the
certificate evaluates the two derivatives and the value in one matrix product
(`TaylorModel.certify`), bounding the mean of the per-row error ratios by the mean of
the numerators over the smallest denominator (never smaller than the per-row bound).
"""

import ctypes
import functools
import math
import os
import warnings

import numpy as np

FIRST_ORDER = 6  # P of the pass at the sample start (even: the remainder's moment is >= 0)
SECOND_ORDER = 4  # P of a second pass, from the first model's minimiser (d is then tiny)
_U = np.finfo(np.float64).eps / 2  # unit roundoff
_BLOCK_ELEMENTS = 1 << 16  # entries per block of rows: the working arrays stay in cache
_FACTORIAL = np.array([math.factorial(k) for k in range(12)], dtype="float64")
_LOG2E = 1.4426950408889634  # log2(e), correctly rounded
_LN2_POWERS = np.array([math.log(2.0) ** m for m in range(12)])
_VECDOT = hasattr(np, "vecdot")  # NumPy >= 2


def raw_moments(z, beta0, order, at_one=True):
    """`(order + 2, N)` float64 per-row sums, one pass over the rows of `z` (N, K).

    Rows 0..order: sum_j exp(x_ij) x_ij^m with x = beta0 * z in float64; the last
    row (only `at_one`, else left unset): sum_j exp(z_ij), the softmax normaliser
    at T = 1. Nothing is checked: see `checked_moments`.
    """
    return _moments(z, beta0, order, at_one, None, None)[0]


def checked_moments(z, beta0, order, limit, ids):
    """`(raw_moments(z, beta0, order), low, high, mean_true)` with low = min z, high >=
    max z and mean_true = mean_i z_i,ids_i (float64, gathered from each block while it
    is in cache), or None if some z < -`limit` or is NaN, or the log of some row's
    sum_j exp(z_ij) exceeds `limit` (so every z > `limit` is refused, and a z at most
    log K below it may be).

    Each block of rows is checked before its moments at beta0: its minimum is read (in
    the dtype of `z`) before any exp, and its maximum is bounded by the log of its
    largest sum_j exp(z_ij), the T = 1 row sums computed first (exp(max_j z_ij) <= that
    sum, so high = the log of the largest one, plus its rounding, bounds max z). A block
    out of range stops the pass before the exps at beta0: with `limit` * max(beta0, 1)
    <= 300 every exp(x) x^6 stays far inside float64 (an exp(z) that overflows there
    is silent and only rejects the block). This replaces separate readings of the
    global minimum and maximum of `z`.
    """
    with np.errstate(over="ignore"):
        return _moments(z, beta0, order, True, limit, ids)


def _moments(z, beta0, order, at_one, limit, ids):
    """The pass of `raw_moments` (no `limit`) and `checked_moments` (with `limit`): in C
    where `_compiled` has it, else in NumPy (`_numpy_pass`); the same sums either way."""
    n, k = z.shape
    scale = float(np.float64(beta0) * _LOG2E)
    top_limit = math.exp(min(limit or 0.0, 700.0))
    kernel = _compiled() if z.dtype in (np.float32, np.float64) and z.size else None
    if kernel is not None:
        sums, low, true = kernel(z, ids, scale, order, at_one)
        top = float(_MAX(sums[-1])) if at_one else 0.0
        if limit is not None and not (-limit <= low and top <= top_limit):  # NaN fails too
            return None  # (a NaN logit makes its row's sum NaN, hence top)
    else:
        checked = _numpy_pass(z, scale, order, at_one, limit, ids, top_limit)
        if checked is None:
            return None
        sums, low, top, true = checked
    sums[1:order + 1] *= _LN2_POWERS[1:order + 1, None]  # sum_j 2^y y^m ln2^m = M_m
    # the computed row sum is >= exp(max_j z_ij) (1 - (k + 4) u) (u the unit roundoff):
    # its log, raised by 2 (k + 4) u and by the rounding of the log, bounds max z
    if limit is None:
        return sums, None, None
    if not top > 0:  # cannot happen for z >= -limit >= -300; refused all the same
        return None
    log_top = math.log(top)
    mean_true = None if ids is None else float(true.sum()) / n  # np.mean's pairwise sum
    return sums, float(low), log_top + 2 * (k + 4 + abs(log_top)) * _U, mean_true


def _numpy_pass(z, scale, order, at_one, limit, ids, top_limit):
    """`(sums, low, top, true)` of the pass in NumPy, by blocks of rows (the sums not yet
    scaled by (ln 2)^m), or None as soon as a block is out of range (see
    `checked_moments`)."""
    n, k = z.shape
    block = max(1, _BLOCK_ELEMENTS // k)
    xs, work = (np.empty((min(block, n), k)) for _ in range(2))
    ones = np.ones(k)  # row sums as matrix-vector products (faster than np.sum here)
    sums = np.empty((order + 2, n))
    true, offsets = np.empty(n), k * np.arange(min(block, n))
    low, top, last = math.inf, 0.0, int(_VECDOT and order > 0)
    for start in range(0, n, block):
        stop = min(start + block, n)
        x, e, z_rows = xs[:stop - start], work[:stop - start], z[start:stop]
        out = sums[:, start:stop]
        if limit is not None:
            block_low = _MIN(z_rows, axis=None)
            if not -limit <= block_low:  # NaN fails too (checked before min() can drop it)
                return None
            low = min(low, block_low)
        x[...] = z_rows  # exact float64 copy
        if ids is not None:  # z_iy, from the block in cache
            np.take(x.reshape(-1), ids[start:stop] + offsets[:stop - start],
                    out=true[start:stop])
        if at_one:
            np.matmul(np.exp(x, out=e), ones, out=out[-1])
        if limit is not None:
            block_top = _MAX(out[-1])
            if not block_top <= top_limit:  # NaN fails too
                return None
            top = max(top, block_top)
        np.multiply(x, scale, out=x)  # y = x / ln 2: exp2 is faster than exp
        np.matmul(np.exp2(x, out=e), ones, out=out[0])
        for m in range(1, order + 1 - last):
            np.matmul(np.multiply(e, x, out=e), ones, out=out[m])
        if last:  # the last one without writing e y^order
            np.vecdot(e, x, out=out[order])
    return sums, low, top, true


_MIN, _MAX = np.minimum.reduce, np.maximum.reduce

_KERNEL = {}  # "pass": the C pass once loaded and checked (None: NumPy), "why": else why not
NO_KERNEL_VARIABLE = "KERAS_SMOOTH_NUMPY_PASS"  # set to 1: always the NumPy pass


def _compiled():
    """The C form of the pass (`_moments_c.c`, compiled at install where a C compiler
    and glibc's vector maths are there) as a function `(z, ids, scale, order, at_one)
    -> (sums, low, true)`, or None: not built, turned off by the environment variable
    `KERAS_SMOOTH_NUMPY_PASS=1`, or off the NumPy form on a check problem (then with a
    warning). Loaded and checked once."""
    if "pass" not in _KERNEL:
        _KERNEL["pass"], _KERNEL["why"] = _load_kernel()
    return _KERNEL["pass"]


def _load_kernel():
    if os.environ.get(NO_KERNEL_VARIABLE, "") not in ("", "0"):
        return None, f"{NO_KERNEL_VARIABLE} is set"
    try:
        from keras_smooth import _moments_c
        library = ctypes.CDLL(_moments_c.__file__)
    except (ImportError, OSError) as error:
        return None, f"not built ({error})"
    functions = {}
    for name, dtype in (("ks_pass_f32", np.float32), ("ks_pass_f64", np.float64)):
        function = getattr(library, name)
        function.restype = ctypes.c_int
        function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                             ctypes.c_double, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
                             ctypes.c_void_p, ctypes.c_void_p]
        functions[np.dtype(dtype)] = function
    kernel = functools.partial(_call_kernel, functions)
    why = _kernel_disagrees(kernel)
    if why:
        warnings.warn(f"keras_smooth: the C pass of fit_temperature is off ({why}); the "
                      "NumPy pass is used instead.", RuntimeWarning, stacklevel=4)
        return None, why
    return kernel, None


def _call_kernel(functions, z, ids, scale, order, at_one):
    """`(sums (order + 2, N), low, true)` from the C pass (see `_moments_c.c`)."""
    z = np.ascontiguousarray(z)
    n, k = z.shape
    sums, true, low = np.empty((order + 2, n)), np.empty(n), ctypes.c_double(math.inf)
    if ids is not None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
    status = functions[z.dtype](
        z.ctypes.data, None if ids is None else ids.ctypes.data, n, k, scale, order,
        int(bool(at_one)), sums.ctypes.data, ctypes.byref(low),
        None if ids is None else true.ctypes.data)
    if status:
        raise ValueError(f"the C pass refused order={order}, K={k}")  # not reached
    return sums, low.value, true


def _kernel_disagrees(kernel):
    """Why the C pass cannot be trusted (a reason), or "" when its sums agree with the
    NumPy pass's within twice the rounding bound of each (module docstring), in float32
    and float64, with ties, a large and a negative offset and a true-class gather."""
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(size=(5, 37)) * 6.0, np.round(rng.normal(size=(2, 37))),
                        rng.normal(size=(2, 37)) + 40.0, rng.normal(size=(2, 37)) - 90.0])
    ids = rng.integers(0, 37, len(z))
    for dtype in (np.float32, np.float64):
        zd = z.astype(dtype)
        scale = float(np.float64(0.7) * _LOG2E)
        got = kernel(zd, ids, scale, FIRST_ORDER, True)
        want = _numpy_pass(zd, scale, FIRST_ORDER, True, None, ids, math.inf)
        y = zd.astype(np.float64) * scale
        for m in range(FIRST_ORDER + 1):
            size = (np.exp2(y) * np.abs(y) ** m).sum(axis=1)
            bound = 2 * (3 * float(np.abs(y).max()) + 37 + 5 * FIRST_ORDER + 10) * _U * size
            if not np.all(np.abs(got[0][m] - want[0][m]) <= bound):
                return f"moment {m} off in {np.dtype(dtype).name}"
        if not (np.allclose(got[0][-1], want[0][-1], rtol=100 * _U, atol=0)
                and got[1] == zd.min() and np.array_equal(got[2], want[3])):
            return f"T = 1 sums, minimum or true-class values off in {np.dtype(dtype).name}"
    return ""


def _centred_moments(sums, p):
    """`(scaled, c)`: per row, c = M_1 / M_0 and scaled_k = mu_k / k! for k <= p, where
    mu_k = sum_j e_ij (x_ij - c)^k / M_0, `(p + 1, N)`; mu_0 = 1 and mu_1 = 0 (by the
    choice of c).

    With alpha_l = M_l / (M_0 l!) (alpha_0 = 1, alpha_1 = c) and t = -c, the binomial
    theorem gives mu_k / k! = sum_{j <= k} alpha_(k-j) t^j / j!, evaluated by Horner's
    rule in t, alpha_k + t (alpha_(k-1) + t/2 (alpha_(k-2) + ... + t/k alpha_0)), whose
    innermost bracket is alpha_1 + t / k = c (k - 1) / k. Rounding: at most 3 k + 4
    roundings (of t / j, of alpha, two per step) on a sum of terms bounded by
    sum_j X^(k-j) / (k-j)! X^j / j! = (2 X)^k / k! (|alpha_l| <= X^l / l!, |t| <= X): within
    the rounding bound gamma (2 X)^k / k! that `TaylorModel` states for mu_k / k!.
    """
    n = sums.shape[1]
    alpha = np.multiply(sums[1:p + 1], 1.0 / sums[0], out=np.empty((p, n)))  # alpha_1..p
    c = alpha[0].copy()
    alpha /= _FACTORIAL[1:p + 1, None]
    steps = np.empty((p, n))  # row j - 1: t / j
    np.negative(c, out=steps[0])
    for j in range(2, p + 1):
        np.multiply(steps[0], 1.0 / j, out=steps[j - 1])
    scaled = np.empty((p + 1, n))
    scaled[0], scaled[1] = 1.0, 0.0
    for k in range(2, p + 1):
        r = np.multiply(c, (k - 1) / k, out=scaled[k])
        for j in range(k - 1, 0, -1):  # alpha_(k+1-j) + t / j * r
            r *= steps[j - 1]
            r += alpha[k - j]
    return scaled, c


class TaylorModel:
    """NLL(beta0 (1 + d)) and its first two d-derivatives near d = 0, with error bounds.

    Args:
        sums: `raw_moments(z, beta0, P)`.
        beta0: the point of the pass.
        mean_true: mean_i z_iy (float64).
        spread: max z - min z over all of `z`, or an upper bound on it (W = beta0 *
            spread bounds |x - c|).
        bound: max |z| over all of `z`, or an upper bound (X = beta0 * bound bounds
            |x| and |c|).
        k: number of classes (enters the rounding bound of the row sums).
    """

    def __init__(self, sums, beta0, mean_true, spread, bound, k):
        self.order = p = len(sums) - 2
        self.beta0, self.x_true, self.width = beta0, beta0 * mean_true, beta0 * spread
        m0, n = sums[0], sums.shape[1]
        self.scaled, c = _centred_moments(sums, p)
        self.mean_center = _mean(c)
        self.mean_log_m0 = _mean(np.log(m0))
        x_bound = beta0 * bound
        gamma = 8 * (k + p + 8 + x_bound) * _U
        # rounding of mu_k: <= gamma E[(|c| + |x|)^k] <= gamma (2 X)^k (a global bound)
        self.rounding = [2 * gamma] + [gamma * (2 * x_bound) ** j for j in range(1, p + 1)]
        self.top = (self.scaled[p] * _FACTORIAL[p] + self.rounding[p]) * self.width
        self.top_mean, self.top_max = float(self.top.sum()) / n, float(self.top.max())
        self.check = 8 * _U * (abs(self.mean_log_m0) + x_bound + abs(self.x_true))

    def _coefficients(self, d, m):
        """The row w with w @ scaled = the model's S_m at d: w_(m+k) = d^k (m+k)! / k!
        (S_m = sum_k d^k / k! mu_(m+k))."""
        w = [0.0] * (self.order + 1)
        term = 1.0
        for j in range(self.order + 1 - m):
            w[m + j] = term * float(_FACTORIAL[m + j])
            term *= d / (j + 1)
        return w

    def _series(self, d, count):
        """Per row, the model's S_0 .. S_(count-1) (centred, / M_0): the series of S_m
        runs to mu_P."""
        return list(np.array([self._coefficients(d, m) for m in range(count)]) @ self.scaled)

    def _errors(self, d, count):
        """(scalar, factor) per m < count: S_m is off by at most scalar + factor * top.

        Rounding: sum_k |d|^k / k! * rounding_(m+k). Truncation (Lagrange, with
        E|x - c|^(P + 1) <= W mu_P and exp(d (x - c)) <= exp(|d| W)):
        |d|^(P + 1 - m) / (P + 1 - m)! * exp(|d| W) * W mu_P.
        """
        p, a = self.order, abs(d)
        growth = math.exp(a * self.width)
        return [(sum(a ** j / _FACTORIAL[j] * self.rounding[m + j] for j in range(p + 1 - m)),
                 a ** (p + 1 - m) / _FACTORIAL[p + 1 - m] * growth)
                for m in range(count)]

    def derivatives(self, d):
        """(NLL', NLL'') in d at `d`, from the model (no error bound)."""
        s0, s1, s2 = self._series(d, 3)
        r1 = s1 / s0
        grad = self.mean_center + _mean(r1) - self.x_true
        return grad, _mean(s2 / s0) - _mean(r1 * r1)

    def gradient_coefficients(self):
        """g_0 .. g_(P-1) with NLL'(d) = sum_n g_n d^n / n! + O(d^P): g_0 = NLL'(0) and
        g_n the mean over rows of the (n + 1)-th cumulant of x under softmax(x) (the
        d-derivatives of log S_0 are the cumulants; their row means are the model's
        NLL derivatives at d = 0). No error bound: only a starting point for Newton."""
        s, p, n = self.scaled, self.order, self.scaled.shape[1]
        products = np.empty((5, n))  # s2^2, s2 s3, s2 s4, s3^2, s2^3 (s_k = mu_k / k!)
        np.multiply(s[2:5], s[2], out=products[:3])
        if p >= 6:
            np.multiply(s[3], s[3], out=products[3])
            np.multiply(products[0], s[2], out=products[4])
        m = s[2:].sum(axis=1) / n  # means of s_2 .. s_p
        q = products[:3 if p < 6 else 5].sum(axis=1) / n
        # kappa_4 = mu4 - 3 mu2^2, kappa_5 = mu5 - 10 mu3 mu2,
        # kappa_6 = mu6 - 15 mu4 mu2 - 10 mu3^2 + 30 mu2^3, with mu_k = k! s_k
        kappa = [2 * m[0], 6 * m[1], 24 * m[2] - 12 * q[0]]
        if p >= 6:
            kappa += [120 * m[3] - 120 * q[1], 720 * m[4] - 720 * q[2] - 360 * q[3] + 240 * q[4]]
        return [self.mean_center - self.x_true] + [float(v) for v in kappa]

    def certified_gradient(self, d):
        """(NLL' in d at `d`, a bound on its error), or None when the bound is not finite."""
        s0, s1 = self._series(d, 2)
        (a0, b0), (a1, b1) = self._errors(d, 2)
        e0 = a0 + b0 * self.top
        low = s0 - e0
        if not low.min() > 0:
            return None
        r1 = s1 / s0
        grad = self.mean_center + _mean(r1) - self.x_true
        error = _mean((a1 + b1 * self.top + np.abs(r1) * e0) / low) + self.check
        return (grad, error) if np.isfinite(error) else None

    def value(self, d):
        """(NLL at `d`, a bound on its error) from the model, or None."""
        (s0,), ((a0, b0),) = self._series(d, 1), self._errors(d, 1)
        e0 = a0 + b0 * self.top
        low = s0 - e0
        if not low.min() > 0:
            return None
        value = self.mean_log_m0 + d * self.mean_center + _mean(np.log(s0)) - (1 + d) * self.x_true
        error = _mean(e0 / low) + (1 + abs(d)) * self.check
        return (value, error) if np.isfinite(error) else None

    def certify(self, d, h):
        """`((NLL', error) at d - h, (NLL', error) at d + h, (NLL, error) at d)` from one
        matrix product, or None where a model S_0 is not certainly positive or a bound
        is not finite.

        The bounds are those of `certified_gradient` and `value` made cheaper and no
        smaller: with low_i = S_0 - e0_i >= L = min S_0 - a0 - b0 max(top) > 0 and
        nonnegative numerators, mean(num_i / low_i) <= mean(num_i) / L, and
        mean(|r1| e0) = a0 mean|r1| + b0 mean(|r1| top).
        """
        n, points = self.scaled.shape[1], (d - h, d + h, d)
        s = np.array([self._coefficients(e, 0) for e in points]
                     + [self._coefficients(e, 1) for e in points[:2]]) @ self.scaled
        errors = [self._errors(e, 2) for e in points]
        floors = s[:3].min(axis=1)
        lows = [floors[i] - a0 - b0 * self.top_max for i, ((a0, b0), _) in enumerate(errors)]
        if not min(lows) > 0:
            return None
        r1 = s[3:] / s[:2]
        grads = r1.sum(axis=1) / n + (self.mean_center - self.x_true)
        np.abs(r1, out=r1)
        r1_abs, r1_top = r1.sum(axis=1) / n, r1 @ self.top / n
        result = []
        for i in (0, 1):
            (a0, b0), (a1, b1) = errors[i]
            mean_num = a1 + b1 * self.top_mean + a0 * r1_abs[i] + b0 * r1_top[i]
            result.append((float(grads[i]), float(mean_num / lows[i] + self.check)))
        (a0, b0), _ = errors[2]
        value = (self.mean_log_m0 + d * self.mean_center + _mean(np.log(s[2]))
                 - (1 + d) * self.x_true)
        value_error = (a0 + b0 * self.top_mean) / lows[2] + (1 + abs(d)) * self.check
        result.append((value, float(value_error)))
        return result if all(math.isfinite(e) for _, e in result) else None


def _mean(values):
    """float(values.mean()) without `np.mean`'s Python overhead (the same pairwise sum)."""
    return float(values.sum()) / values.size
