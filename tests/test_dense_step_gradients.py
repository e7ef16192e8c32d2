"""The written-out gradients of LLS and LS++ on a dense matrix (issue 14).

On TensorFlow, with the default plain `Adam` as `matrix_optimizer`, a training
step no longer differentiates the loss by autodiff: `dense_step` of `LLSLoss`
and `LSPlusPlusLoss` gives the values and both gradients by formula. These
tests hold the formulas to the equations, written here in float64 NumPy and
differentiated by central finite differences:

* LLS (Eq. 4-5): loss = 0.5 sum_k (t_k - p_k)(log max(t_k, eps) - log p_k),
  t = (1 - alpha) onehot + alpha softmax(Q[y]); the network and Q both learn
  from all of it.
* LS++ (§3.2): loss = 0.5 (H(sg(t), p) + H(sg(p), log max(t, eps))), C[y] the
  softmax over the off-diagonal logits of row y: the network learns from the
  first term only, C from the second only.

The matrix's gradient is read from Adam's first moment after one step from
zero slots (m = (1 - beta_1) g): the upstream-weighted mean of the per-sample
gradients. The network's gradient is the tape's gradient in the logits. Each
problem is also run through the autodiff path (`dense_step_applies` answering
False on the instance), which must agree to float32 rounding.
"""

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="the TensorFlow matrix step"
)

from keras_smooth import losses  # noqa: E402

def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _targets(theta, y, alpha, lspp):
    """t from the row logits `theta` (B, K), float64."""
    k = theta.shape[1]
    onehot = np.eye(k)[y]
    if lspp:  # softmax over the off-diagonal entries of row y
        theta = np.where(onehot > 0, -np.inf, theta)
    rows = np.exp(_log_softmax(theta))
    return (1 - alpha) * onehot + alpha * rows


def _per_sample(z, theta, y, alpha, lspp, part):
    """Per-sample loss (float64). `part`: "all", "network" (LS++: t fixed) or
    "matrix" (LS++: p fixed); `z` and `theta` may be the fixed copies."""
    lp = _log_softmax(z)
    t = _targets(theta, y, alpha, lspp)
    log_t = np.log(np.maximum(t, keras.config.epsilon()))  # the clamp of log t
    if not lspp:
        return 0.5 * ((t - np.exp(lp)) * (log_t - lp)).sum(axis=-1)
    network = -(t * lp).sum(axis=-1)
    matrix = -(np.exp(lp) * log_t).sum(axis=-1)
    return 0.5 * {"network": network, "matrix": matrix, "all": network + matrix}[part]


def _numeric_gradient(f, x, h=1e-6):
    grad = np.zeros_like(x)
    for index in np.ndindex(*x.shape):
        step = np.zeros_like(x)
        step[index] = h
        grad[index] = (f(x + step) - f(x - step)) / (2 * h)
    return grad


def _expected(z, q, y, w, alpha, lspp):
    """(values, d total / d z, upstream-weighted mean gradient in Q), from NumPy."""
    b = len(y)
    values = _per_sample(z, q[y], y, alpha, lspp, "all")
    net_part = "network" if lspp else "all"
    d_z = _numeric_gradient(
        lambda zz: (w * _per_sample(zz, q[y], y, alpha, lspp, net_part)).sum() / b, z)
    mat_part = "matrix" if lspp else "all"
    d_q = _numeric_gradient(
        lambda qq: (w * _per_sample(z, qq[y], y, alpha, lspp, mat_part)).sum() / w.sum(), q)
    return values, d_z, d_q


def _run(z, q, y, w, alpha, lspp, analytic=True, onehot=False, cls=None):
    """(per-sample values, d loss / d z, Q's gradient) from one TensorFlow step; checks
    that the written-out path ran exactly when `analytic` (a spy on `dense_step`)."""
    import tensorflow as tf

    from keras_smooth.losses import _tf_matrix_hook as hook

    k = z.shape[1]
    cls = cls or (losses.LSPlusPlusLoss if lspp else losses.LLSLoss)
    loss = cls(k, alpha=alpha)
    if not analytic:
        loss.dense_step_applies = lambda: False
    calls = []
    original = loss.dense_step
    loss.dense_step = lambda *args: calls.append(1) or original(*args)
    loss.matrix_layer.logits.assign(q.astype("float32"))
    optimizer = loss.matrix_optimizer
    assert hook._fused_adam_slots(optimizer, loss.matrix_layer.logits) is not None
    logits = tf.constant(z.astype("float32"))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(logits)
            labels = tf.one_hot(y, k) if onehot else tf.constant(y)
            values = loss.call(labels, logits)
            total = tf.reduce_sum(values * tf.constant(w.astype("float32"))) / len(y)
        return values, tape.gradient(total, logits)

    values, d_z = step()
    m = hook._fused_adam_slots(optimizer, loss.matrix_layer.logits)[0].numpy()
    assert int(optimizer.iterations.numpy()) == 1
    assert bool(calls) == (analytic and loss.dense_step_applies())
    return values.numpy(), d_z.numpy(), m / (1.0 - optimizer.beta_1)


def _problem(rng, k, b, alpha, scale=3.0, clamp=False):
    z = rng.normal(size=(b, k)) * scale
    q = rng.normal(size=(k, k)) * 2.0
    if clamp:  # some entries of t = alpha C[y] near and below eps: the clamp's edge
        low = rng.random((k, k)) < 0.4
        q[low] -= rng.uniform(10.0, 40.0, size=low.sum())
    y = rng.integers(0, k, size=b)
    y[: b // 3] = y[0]  # repeated labels: their rows' gradients add up
    w = rng.uniform(0.1, 2.0, size=b)
    return z, q, y.astype("int32"), w


@pytest.mark.parametrize("lspp", [False, True], ids=["lls", "lspp"])
@pytest.mark.parametrize("clamp", [False, True], ids=["plain", "clamped"])
def test_written_out_gradients_equal_finite_differences_of_the_equations(lspp, clamp):
    rng = np.random.default_rng(11 + lspp + 2 * clamp)
    for alpha, onehot in ((0.1, False), (0.45, True)):
        z, q, y, w = _problem(rng, k=6, b=9, alpha=alpha, clamp=clamp)
        values, d_z, d_q = _run(z, q, y, w, alpha, lspp, onehot=onehot)
        ref_values, ref_z, ref_q = _expected(z, q, y, w, alpha, lspp)
        np.testing.assert_allclose(values, ref_values, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(d_z, ref_z, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(d_q, ref_q, rtol=1e-4, atol=1e-6)
        assert np.abs(ref_q).max() > 1e-3  # the matrix has something to learn
        if lspp:  # the diagonal of C is not a parameter: no gradient there
            assert np.all(np.diag(d_q) == 0.0)


@pytest.mark.parametrize("lspp", [False, True], ids=["lls", "lspp"])
def test_written_out_gradients_equal_autodiff_on_many_problems(lspp):
    """Random sizes, scales and alphas, with the degenerate corners: K = 2, one row,
    one label for all rows, alpha = 0 (the matrix gets exactly no gradient), huge
    logits (probabilities of exactly 0 and 1) and zero logits (ties)."""
    rng = np.random.default_rng(5 + lspp)
    cases = [dict(k=2, b=3), dict(k=5, b=1), dict(k=4, b=6, same=True),
             dict(k=5, b=7, alpha=0.0), dict(k=6, b=5, scale=1e4), dict(k=6, b=5, scale=0.0)]
    cases += [dict(k=int(rng.integers(2, 9)), b=int(rng.integers(1, 12)),
                   alpha=float(rng.choice([0.05, 0.3, 0.9])), scale=float(rng.choice([0.1, 3.0, 30.0])),
                   clamp=bool(rng.integers(2))) for _ in range(18)]
    for case in cases:
        alpha = case.get("alpha", 0.2)
        z, q, y, w = _problem(rng, case["k"], case["b"], alpha, case.get("scale", 3.0),
                              case.get("clamp", False))
        if case.get("same"):
            y[:] = 1
        got = _run(z, q, y, w, alpha, lspp)
        want = _run(z, q, y, w, alpha, lspp, analytic=False)
        for a, b in zip(got, want):
            assert np.all(np.isfinite(a)), case
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6, err_msg=str(case))
        if alpha == 0.0:
            assert np.all(got[2] == 0.0)



def _subclasses():
    """Subclasses for which the written-out formulas would be wrong: each changes what
    `values` computes (objective, values, the matrix rows or the diagonal rule)."""
    from keras_smooth.layers.q_matrix import QMatrix

    class Doubled(losses.LLSLoss):
        def objective(self, onehot, log_probs, probs, rows):
            return 2.0 * super().objective(onehot, log_probs, probs, rows)

    class Tripled(losses.LSPlusPlusLoss):
        def values(self, *args, **kwargs):
            return 3.0 * super().values(*args, **kwargs)

    class ZeroDiagonalLLS(losses.LLSLoss):
        zero_diagonal = True

    class FullLSPlusPlus(losses.LSPlusPlusLoss):
        zero_diagonal = False

    class CoolRows(QMatrix):
        def rows(self, ids, table=None, each_row_once=True):
            table = self.logits if table is None else table
            return super().rows(ids, table / 4.0, each_row_once)

    class CooledLLS(losses.LLSLoss):
        def _build_matrix(self, *args, **kwargs):
            layer = super()._build_matrix(*args, **kwargs)
            return CoolRows(self.num_classes, zero_diagonal=False, name=layer.name)

    return [Doubled, Tripled, ZeroDiagonalLLS, FullLSPlusPlus, CooledLLS]


@pytest.mark.parametrize("index", range(5))
def test_a_subclass_that_changes_the_loss_is_differentiated_by_autodiff(index):
    """Such a subclass must train on the gradient of what it computes: the step equals
    the autodiff step of the same subclass, and `dense_step` is never called."""
    cls = _subclasses()[index]
    loss = cls(5, alpha=0.3)
    assert not loss.dense_step_applies()  # though it inherits a written-out dense_step
    assert cls.__mro__[1](5).dense_step_applies()
    rng = np.random.default_rng(3 + index)
    z, q, y, w = _problem(rng, k=5, b=6, alpha=0.3)
    got = _run(z, q, y, w, 0.3, None, cls=cls)  # asserts dense_step is not called
    want = _run(z, q, y, w, 0.3, None, analytic=False, cls=cls)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("lspp", [False, True], ids=["lls", "lspp"])
def test_the_clamp_follows_keras_epsilon(lspp):
    """A larger epsilon moves the clamp's edge (the formulas read it at trace time); an
    epsilon of 0 leaves the formulas (their mask needs eps > 0) for autodiff."""
    rng = np.random.default_rng(21 + lspp)
    z, q, y, w = _problem(rng, k=6, b=8, alpha=0.2, clamp=True)
    old = keras.config.epsilon()
    try:
        keras.config.set_epsilon(1e-3)
        values, d_z, d_q = _run(z, q, y, w, 0.2, lspp)
        ref_values, ref_z, ref_q = _expected(z, q, y, w, 0.2, lspp)
        np.testing.assert_allclose(values, ref_values, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(d_z, ref_z, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(d_q, ref_q, rtol=1e-4, atol=1e-6)
        keras.config.set_epsilon(0.0)
        cls = losses.LSPlusPlusLoss if lspp else losses.LLSLoss
        assert not cls(6).dense_step_applies()
        _run(z, q, y, w, 0.2, lspp)  # asserts the written-out path did not run
    finally:
        keras.config.set_epsilon(old)
