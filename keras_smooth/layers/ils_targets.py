"""The ILS target generator: labels + teacher logits -> ILS1/ILS2/ILS targets."""

import keras

from keras_smooth import _checks
from keras_smooth import _ops
from keras_smooth import targets

METHODS = targets.ILS_METHODS


@keras.saving.register_keras_serializable(package="keras_smooth")
class ILSTargets(keras.layers.Layer):
    """Turn labels and teacher logits into instance-based smoothed targets.

    A thin layer over `keras_smooth.targets.ils_from_logits`:

    * `ils1`: epsilon_x from `softmax(logits / calibration_temperature)`
      (ILS paper, Eq. 3), spread uniformly.
    * `ils2`: fixed `epsilon`, wrong-class mass shaped by the teacher at
      `temperature` (Eq. 4).
    * `ils`: epsilon_x of ILS1 with the wrong-class shape of ILS2 (§IV-C).

    The wrong-class shape is a softmax over the K - 1 wrong-class logits, so a
    teacher whose true-class probability rounds to 1 still gives finite
    targets. The layer has no weights; it works in models and in `tf.data`
    maps on every backend (there, on JAX and torch, it computes in TensorFlow,
    which a `tf.data` graph always holds, and returns `tf.Tensor`s).
    Its dtype defaults to float32 whatever the global policy, so teacher
    logits are not rounded to 16 bits first; its output is float32 under every
    dtype policy (targets such as
    `epsilon / K` and small wrong-class shares lose most of their digits in
    float16), and `compute_output_spec` says so. Labels must be class ids in
    [0, K) or one-hot rows; eager teacher logits must be finite
    (`ValueError` otherwise).

    Args:
        method: `"ils1"`, `"ils2"` or `"ils"`.
        epsilon: smoothing factor for `ils2`, in [0, 1).
        p1, p2, cap: ILS1 parameters (see `keras_smooth.targets.ils1_epsilon`).
        temperature: teacher temperature T for the wrong-class shape (> 0).
        calibration_temperature: the teacher's fitted temperature T* used for
            epsilon_x (> 0).

    Call arguments:
        labels: class ids `(N,)`/`(N, 1)` or one-hot `(N, K)`.
        teacher_logits: `(N, K)`.

    Examples:
    >>> import numpy as np
    >>> from keras_smooth.layers import ILSTargets
    >>> layer = ILSTargets("ils2", epsilon=0.1, temperature=1.0)
    >>> logits = np.log(np.array([[0.6, 0.3, 0.1]], "float32"))
    >>> np.round(np.asarray(layer(np.array([0]), logits)), 4)
    array([[0.9  , 0.075, 0.025]], dtype=float32)
    """

    def __init__(
        self,
        method="ils",
        epsilon=0.1,
        p1=0.9,
        p2=1.0,
        cap=0.2,
        temperature=1.0,
        calibration_temperature=1.0,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")  # no autocast of the teacher logits to 16 bits
        super().__init__(**kwargs)
        if method not in METHODS:
            raise ValueError(f"`method` must be one of {METHODS}, got {method!r}.")
        self.method = method
        self.epsilon = _checks.check_fraction("epsilon", epsilon)
        self.p1 = _checks.check_unit_interval("p1", p1)
        self.p2 = _checks.check_non_negative("p2", p2)
        self.cap = _checks.check_fraction("cap", cap)
        self.temperature = _checks.check_float32_positive("temperature", temperature)
        self.calibration_temperature = _checks.check_float32_positive(
            "calibration_temperature", calibration_temperature)
        self.built = True

    def __call__(self, labels, teacher_logits, **kwargs):
        # Python lists, as the functions of `targets` take them (`Layer.__call__` takes
        # only tensors and arrays as positional arguments, with an error naming neither)
        if isinstance(labels, (list, tuple)):
            labels = _checks.real_tensor("labels", labels)
        if isinstance(teacher_logits, (list, tuple)):
            teacher_logits = _checks.real_tensor("teacher_logits", teacher_logits)
        if keras.backend.backend() != "tensorflow" and (
                _ops.is_symbolic_tf(labels) or _ops.is_symbolic_tf(teacher_logits)):
            # A tf.data map on JAX or torch: `Layer.__call__` would convert the graph
            # tensors to the backend's arrays, which cannot be done. The layer has no
            # weights, so `call` alone is the whole layer; it runs in TensorFlow.
            return self.call(labels, teacher_logits)
        return super().__call__(labels, teacher_logits, **kwargs)

    def call(self, labels, teacher_logits):
        return targets.ils_from_logits(
            labels, teacher_logits, self.method, epsilon=self.epsilon, p1=self.p1, p2=self.p2,
            cap=self.cap, temperature=self.temperature,
            calibration_temperature=self.calibration_temperature,
        )

    def compute_output_shape(self, labels_shape, teacher_logits_shape):
        return tuple(teacher_logits_shape)

    def compute_output_spec(self, labels, teacher_logits):
        # Targets are float32 whatever the dtype policy (see the class docstring).
        return keras.KerasTensor(tuple(teacher_logits.shape), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(
            method=self.method,
            epsilon=self.epsilon,
            p1=self.p1,
            p2=self.p2,
            cap=self.cap,
            temperature=self.temperature,
            calibration_temperature=self.calibration_temperature,
        )
        return config
