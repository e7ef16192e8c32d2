/* The per-row pass of `keras_smooth._temperature_model` in one loop over the logits.

   An optional speed-up: `_temperature_model` uses it when this file was compiled at install
   time (Linux x86-64; see setup.py) and checks it against its NumPy form on first use; it
   computes the same sums as that form, with the same rounding bound (the module docstring
   of `_temperature_model`):

     sums[m * n + i]      = sum_j 2^y_ij y_ij^m, y = z * scale (scale = fl(beta0 log2 e)),
                            m = 0 .. order (the caller scales row m by (ln 2)^m);
     sums[(order+1)*n+i]  = sum_j exp(z_ij), the softmax normaliser at T = 1 (if at_one);
     low[0]               = min of z over all rows (if at_one; NaN: see below);
     true_values[i]       = z[i, ids[i]] (if ids is not NULL).

   exp and exp2 are glibc's vector versions (libmvec, within 4 ulp), reached through the
   `declare simd` below; no -ffast-math (which would assume no NaN and, linked, change the
   process's denormal handling). A NaN in z makes that row's sums NaN (exp(NaN) = NaN),
   which the caller refuses; the minimum may then skip it. Nothing is allocated; the
   Python module part is empty (ctypes calls the two functions). */

#include <Python.h>
#include <stdint.h>

#pragma omp declare simd notinbranch
double exp(double);
#pragma omp declare simd notinbranch
double exp2(double);

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KS_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define KS_CLONES
#endif

/* m0..m6 += 2^y y^m for y = x * scale */
#define KS_MOMENTS(x)                                                                        \
    double y = (x) * scale, e = exp2(y);                                                     \
    m0 += e; e *= y; m1 += e; e *= y; m2 += e; e *= y; m3 += e;                              \
    e *= y; m4 += e; e *= y; m5 += e; e *= y; m6 += e;

#define KS_PASS(NAME, TYPE)                                                                  \
    KS_CLONES int NAME(const TYPE *z, const int64_t *ids, int64_t n, int64_t k,             \
                       double scale, int order, int at_one, double *sums, double *low,      \
                       double *true_values) {                                               \
        double lo = INFINITY;                                                                \
        if (order < 0 || order > 6 || k < 1) return -1;                                      \
        for (int64_t i = 0; i < n; i++) {                                                    \
            const TYPE *row = z + i * k;                                                     \
            double s = 0, m0 = 0, m1 = 0, m2 = 0, m3 = 0, m4 = 0, m5 = 0, m6 = 0;            \
            double rlo = INFINITY;                                                           \
            if (at_one) { /* one loop: the T = 1 sum and the minimum beside the moments */   \
                _Pragma("omp simd reduction(+:s,m0,m1,m2,m3,m4,m5,m6) reduction(min:rlo)")   \
                for (int64_t j = 0; j < k; j++) {                                            \
                    double x = (double)row[j];                                               \
                    s += exp(x);                                                             \
                    rlo = x < rlo ? x : rlo;                                                 \
                    KS_MOMENTS(x)                                                            \
                }                                                                            \
                sums[(int64_t)(order + 1) * n + i] = s;                                      \
                lo = rlo < lo ? rlo : lo;                                                    \
            } else {                                                                         \
                _Pragma("omp simd reduction(+:m0,m1,m2,m3,m4,m5,m6)")                        \
                for (int64_t j = 0; j < k; j++) {                                            \
                    KS_MOMENTS((double)row[j])                                               \
                }                                                                            \
            }                                                                                \
            double m[7] = {m0, m1, m2, m3, m4, m5, m6};                                      \
            for (int q = 0; q <= order; q++) sums[(int64_t)q * n + i] = m[q];                \
            if (ids) true_values[i] = (double)row[ids[i]];                                   \
        }                                                                                    \
        *low = lo;                                                                           \
        return 0;                                                                            \
    }

KS_PASS(ks_pass_f32, float)
KS_PASS(ks_pass_f64, double)

static struct PyModuleDef ks_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_moments_c",
    .m_doc = "C form of the temperature fit's pass (called through ctypes).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__moments_c(void) { return PyModule_Create(&ks_module); }
