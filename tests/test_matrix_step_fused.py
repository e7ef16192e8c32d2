"""The matrix's optimizer step on TensorFlow (issue 14): fused Adam, and newcomers.

* A plain Keras `Adam` (the default `matrix_optimizer`) steps the matrix in one
  fused kernel. Its result must be Adam's rule (Kingma & Ba 2015, Algorithm 1,
  with the bias corrections folded into the step size as Keras writes it),
  checked against NumPy written from that rule, and must match Keras's own
  generic `Adam` step in a real `fit`.
* Any option that changes the rule (AMSGrad, clipping, weight decay, EMA,
  accumulation, a constraint) must leave the fused path.
* Under `TrainableTargetsModel`, a sparse matrix's newcomer neighbour must not
  receive the gradient its predecessor's entry had in the same step.
"""

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="the TensorFlow matrix step"
)

from keras_smooth import TrainableTargetsModel, losses  # noqa: E402


def _np_adam(var, grads, lrs, beta_1=0.9, beta_2=0.999, eps=1e-7):
    """Adam in float64 from the rule: alpha_t = lr_t sqrt(1 - b2^t) / (1 - b1^t)."""
    var, m, v = (np.array(var, "float64"), np.zeros(var.shape), np.zeros(var.shape))
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        m += (1 - beta_1) * (g - m)
        v += (1 - beta_2) * (g * g - v)
        var -= lr * np.sqrt(1 - beta_2**t) / (1 - beta_1**t) * m / (np.sqrt(v) + eps)
    return var, m, v


@pytest.mark.parametrize("sparse_rows", [False, True])
@pytest.mark.parametrize("schedule", [False, True])
def test_fused_adam_is_adams_rule(sparse_rows, schedule):
    import tensorflow as tf

    from keras_smooth.losses import _tf_matrix_hook as hook

    rng = np.random.default_rng(0)
    k = 7
    lr = (keras.optimizers.schedules.ExponentialDecay(0.05, 1, 0.5) if schedule else 0.05)
    optimizer = keras.optimizers.Adam(lr, beta_1=0.8, beta_2=0.95, epsilon=1e-3)
    start = rng.normal(size=(k, k)).astype("float32")
    variable = keras.Variable(start)
    optimizer.build([variable])
    assert hook._fused_adam_slots(optimizer, variable) is not None
    grads, lrs = [], []
    step_fn = tf.function(lambda grad: hook.apply_matrix_gradient(optimizer, grad, variable))
    for step in range(6):
        g = (rng.normal(size=(k, k)) * rng.choice([1e-3, 1.0, 50.0])).astype("float32")
        if sparse_rows:
            rows = np.sort(rng.choice(k, size=3, replace=False)).astype("int32")
            kept = np.zeros_like(g)
            kept[rows] = g[rows]
            g, grad = kept, tf.IndexedSlices(tf.constant(g[rows]), tf.constant(rows),
                                             tf.constant([k, k]))
        else:
            grad = tf.constant(g)
        grads.append(g.astype("float64"))
        lrs.append(0.05 * 0.5**step if schedule else 0.05)
        count = step_fn(grad)
        assert int(count) == step + 1
    expected, m, v = _np_adam(start, grads, lrs, 0.8, 0.95, 1e-3)
    np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-5, atol=1e-6)
    slots = hook._fused_adam_slots(optimizer, variable)
    np.testing.assert_allclose(slots[0].numpy(), m, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(slots[1].numpy(), v, rtol=1e-4, atol=1e-6)
    assert int(optimizer.iterations.numpy()) == 6


class GenericAdam(keras.optimizers.Adam):
    """Keras's generic Adam step (a subclass never takes the fused path)."""


def _fit_matrix(kind, optimizer, seed=0, jit_compile=False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(96, 5)).astype("float32")
    y = rng.integers(0, 6, size=96)
    cls = losses.LLSLoss if kind == "lls" else losses.LSPlusPlusLoss
    loss = cls(6, alpha=0.3, matrix_optimizer=optimizer)
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(6)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss, jit_compile=jit_compile)
    from keras_smooth.losses import _tf_matrix_hook as hook

    fused = hook._fused_adam_slots(loss.matrix_optimizer, loss.matrix_layer.logits) is not None
    assert fused == (type(optimizer) is keras.optimizers.Adam)  # the path under test
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    return loss.matrix_layer.logits.numpy(), loss.matrix_optimizer


@pytest.mark.parametrize("kind", ["lls", "lspp"])
def test_fused_fit_equals_keras_generic_adam(kind):
    fused, optimizer = _fit_matrix(kind, keras.optimizers.Adam(0.05))
    generic, _ = _fit_matrix(kind, GenericAdam(0.05))
    assert int(optimizer.iterations.numpy()) == 12
    assert np.abs(generic).max() > 0.05  # the matrix moved
    np.testing.assert_allclose(fused, generic, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["lls", "lspp"])
def test_fused_step_under_xla_equals_keras_generic_adam(kind):
    # jit_compile=True is Keras's "auto" choice on GPU machines.
    fused, optimizer = _fit_matrix(kind, keras.optimizers.Adam(0.05), jit_compile=True)
    generic, _ = _fit_matrix(kind, GenericAdam(0.05))
    assert int(optimizer.iterations.numpy()) == 12
    np.testing.assert_allclose(fused, generic, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("options", [
    {"amsgrad": True}, {"clipnorm": 1.0}, {"clipvalue": 0.1}, {"global_clipnorm": 1.0},
    {"weight_decay": 0.01}, {"use_ema": True}, {"gradient_accumulation_steps": 2},
    {"loss_scale_factor": 8.0},
])
def test_options_that_change_adams_rule_leave_the_fused_path(options):
    from keras_smooth.losses import _tf_matrix_hook as hook

    variable = keras.Variable(np.zeros((3, 3), "float32"))
    optimizer = keras.optimizers.Adam(0.01, **options)
    optimizer.build([variable])
    assert hook._fused_adam_slots(optimizer, variable) is None


def test_a_variable_overwritten_with_its_gradient_leaves_the_fused_path():
    # Keras assigns the gradient to such a variable (and gives it no Adam slots).
    import tensorflow as tf

    from keras_smooth.losses import _tf_matrix_hook as hook

    variable = keras.Variable(np.zeros((3, 3), "float32"))
    variable.overwrite_with_gradient = True
    optimizer = keras.optimizers.Adam(0.1)
    optimizer.build([variable])
    assert hook._fused_adam_slots(optimizer, variable) is None
    hook.apply_matrix_gradient(optimizer, tf.fill([3, 3], 2.0), variable)
    np.testing.assert_array_equal(variable.numpy(), np.full((3, 3), 2.0))


def test_a_constraint_or_another_optimizer_leaves_the_fused_path():
    from keras_smooth.losses import _tf_matrix_hook as hook

    from keras_smooth.layers import QMatrix

    constrained = QMatrix(3, constraint=keras.constraints.NonNeg()).logits
    assert constrained.constraint is not None
    adam = keras.optimizers.Adam(0.01)
    adam.build([constrained])
    assert hook._fused_adam_slots(adam, constrained) is None
    plain = keras.Variable(np.zeros((3, 3), "float32"))
    for optimizer in (keras.optimizers.SGD(0.1), GenericAdam(0.01), keras.optimizers.AdamW()):
        optimizer.build([plain])
        assert hook._fused_adam_slots(optimizer, plain) is None


def test_newcomer_neighbour_starts_at_the_tail_under_trainable_targets_model():
    # K = 5, N = 1: class 0's one neighbour (class 1) has a logit below the tail,
    # so the first step swaps it for the sample's most probable class outside the
    # support. The predecessor's gradient must not move the newcomer's logit: with
    # SGD and no other change, the newcomer's logit stays at the pre-step tail.
    k = 5
    loss = losses.LLSLoss(k, alpha=0.5, neighbors=1, neighbor_ids=[[1], [2], [3], [4], [0]])
    logits = np.zeros((k, 3), "float32")
    logits[0] = [0.3, -2.0, 0.7]  # diagonal, neighbour (class 1), tail
    loss.matrix_layer.logits.assign(logits)
    net = keras.Sequential([keras.Input((2,)), keras.layers.Dense(k, use_bias=True)])
    net.layers[-1].set_weights([np.zeros((2, k), "float32"),
                                np.array([0.0, 5.0, 0.0, 3.0, 0.0], "float32")])
    model = TrainableTargetsModel(net)
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss=loss)
    model.train_on_batch(np.zeros((1, 2), "float32"), np.array([0]))
    ids = keras.ops.convert_to_numpy(loss.matrix_layer.neighbor_ids)
    after = loss.matrix_layer.logits.numpy()
    # Row 0's support is its own class and neighbour 1; the most probable class
    # outside it is class 3 (bias 3.0; class 1's 5.0 is inside the support).
    assert ids[0, 0] == 3
    assert after[0, 1] == pytest.approx(0.7, abs=1e-7)  # the newcomer: the old tail
    assert after[0, 2] != pytest.approx(0.7, abs=1e-4)  # the tail itself trained


def _swap_after_momentum(model_optimizer=None):
    """Row 0 of a K = 5, N = 1 sparse LLS matrix: step 1 trains it with no swap
    (its neighbour, class 1, sits above the tail), then the neighbour's logit is
    pushed below the tail and step 2 swaps in class 3 (the most probable class
    outside the support). Returns (loss, tail logit before step 2)."""
    k = 5
    loss = losses.LLSLoss(k, alpha=0.5, neighbors=1, neighbor_ids=[[1], [2], [3], [4], [0]],
                          matrix_optimizer=keras.optimizers.Adam(0.1))
    logits = np.zeros((k, 3), "float32")
    logits[0] = [0.3, 1.0, 0.7]
    loss.matrix_layer.logits.assign(logits)
    net = keras.Sequential([keras.Input((2,)), keras.layers.Dense(k)])
    net.layers[-1].set_weights([np.zeros((2, k), "float32"),
                                np.array([0.0, 5.0, 0.0, 3.0, 0.0], "float32")])
    model = net if model_optimizer is None else TrainableTargetsModel(net)
    model.compile(optimizer=model_optimizer or keras.optimizers.SGD(0.0), loss=loss)
    x, y = np.zeros((1, 2), "float32"), np.array([0])
    model.train_on_batch(x, y)
    assert keras.ops.convert_to_numpy(loss.matrix_layer.neighbor_ids)[0, 0] == 1  # no swap
    after_one = loss.matrix_layer.logits.numpy()
    after_one[0, 1] = after_one[0, 2] - 2.0
    loss.matrix_layer.logits.assign(after_one)
    model.train_on_batch(x, y)
    assert keras.ops.convert_to_numpy(loss.matrix_layer.neighbor_ids)[0, 0] == 3  # swapped
    return loss, float(after_one[0, 2])


def test_the_losses_own_adam_forgets_the_predecessors_momentum():
    # Plain model: the loss's Adam steps the predecessor's entry, the swap sets the
    # newcomer to the tail, and the momentum there is zeroed (the second moment, a
    # scale, is kept); untouched entries keep theirs.
    from keras_smooth.losses import _tf_matrix_hook as hook

    loss, _ = _swap_after_momentum()
    m, v = (s.numpy() for s in hook._fused_adam_slots(loss.matrix_optimizer,
                                                      loss.matrix_layer.logits))
    logits = loss.matrix_layer.logits.numpy()
    assert logits[0, 1] == logits[0, 2]  # the newcomer starts at the (stepped) tail
    assert m[0, 1] == 0.0 and v[0, 1] > 0.0
    assert m[0, 0] != 0.0 and m[0, 2] != 0.0  # the diagonal and the tail keep theirs


def test_under_trainable_targets_model_the_newcomer_gets_no_gradient_with_adam():
    # The model's Adam keeps its own moments at the entry (documented); the newcomer's
    # move in its arrival step is then that momentum alone, smaller than a step that
    # also applies the predecessor's gradient (0.0996 before the fix, 0.067 after).
    loss, tail = _swap_after_momentum(keras.optimizers.Adam(0.1))
    moved = abs(loss.matrix_layer.logits.numpy()[0, 1] - tail)
    assert moved < 0.08


def test_the_returned_gradient_with_rechoosing_is_the_plain_one_except_at_swaps():
    # Under TrainableTargetsModel the hook returns the matrix gradient; it must equal
    # the gradient without re-choosing at every entry that was not swapped, and be 0
    # at the swapped ones (random problems of tests/test_sparse_q.py).
    import tensorflow as tf

    from test_sparse_q import _frozen_sparse, _random_problem

    rng = np.random.default_rng(7)
    swaps = 0
    for problem in range(40):
        kind = "lls" if problem % 2 else "lspp"
        k, n, ids, logits, labels, z = _random_problem(rng)
        logits = logits.clip(-3, 3)
        grads = {}
        for rechoose in (False, True):
            loss = _frozen_sparse(kind, k, n, ids, logits, 0.3, rechoose=rechoose)
            loss.matrix_layer.trainable = True
            loss.attached = True
            with tf.GradientTape() as tape:
                value = tf.reduce_sum(loss.call(labels, z))
            grads[rechoose] = tf.convert_to_tensor(
                tape.gradient(value, loss.matrix_layer.logits.value)).numpy()
        swapped = np.zeros_like(grads[True], bool)
        swapped[:, 1:n + 1] = keras.ops.convert_to_numpy(loss.matrix_layer.neighbor_ids) != ids
        swaps += int(swapped.any())
        np.testing.assert_allclose(grads[True][~swapped], grads[False][~swapped],
                                   rtol=1e-5, atol=1e-6)
        assert np.all(grads[True][swapped] == 0.0)
    assert swaps >= 5  # the check saw swaps
