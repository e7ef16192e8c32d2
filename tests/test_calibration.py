"""Calibration functions and streaming metrics against NumPy references."""


import keras
import numpy as np
import pytest
from scipy import optimize

from keras_smooth import calibration
from keras_smooth.metrics import ClasswiseECE, ExpectedCalibrationError


# --- references written from the equations (float64, loops, no shared code) ----


def ref_bin(c, m_bins):
    """Bin m-1 for c in ((m-1)/M, m/M]; 0 goes to the first bin."""
    return max(int(np.ceil(c * m_bins)) - 1, 0)


def ref_ece(labels, probs, m_bins):
    n = len(labels)
    bins = {}
    for y, p in zip(labels, probs):
        b = ref_bin(p.max(), m_bins)
        bins.setdefault(b, []).append((p.max(), float(p.argmax() == y)))
    return sum(len(v) / n * abs(np.mean([a for _, a in v]) - np.mean([c for c, _ in v]))
               for v in bins.values())


def ref_classwise_ece(labels, probs, m_bins):
    n, k = probs.shape
    total = 0.0
    for j in range(k):
        bins = {}
        for y, p in zip(labels, probs):
            bins.setdefault(ref_bin(p[j], m_bins), []).append((p[j], float(y == j)))
        total += sum(len(v) / n * abs(np.mean([a for _, a in v]) - np.mean([c for c, _ in v]))
                     for v in bins.values())
    return total / k


def sample_calibrated(rng, n, k=4, scale=2.0):
    logits = rng.normal(size=(n, k)) * scale
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    labels = (rng.random((n, 1)) > probs.cumsum(1)).sum(1)
    return logits, probs, np.minimum(labels, k - 1)


@pytest.fixture
def random_case(rng):
    _, probs, labels = sample_calibrated(rng, 300, k=5, scale=3.0)
    return labels, probs


@pytest.mark.parametrize("m_bins", [1, 10, 15])
def test_ece_and_classwise_ece_match_references(random_case, m_bins):
    labels, probs = random_case
    np.testing.assert_allclose(calibration.ece(labels, probs, m_bins),
                               ref_ece(labels, probs, m_bins), atol=1e-6)
    np.testing.assert_allclose(
        calibration.classwise_ece(labels, probs, m_bins),
        ref_classwise_ece(labels, probs, m_bins), atol=1e-6,
    )


def test_hand_worked_edges_zero_and_one():
    # M = 5: bins (0,.2], (.2,.4], (.4,.6], (.6,.8], (.8,1]; 0 joins the first.
    probs = np.array([[0.2, 0.8], [0.6, 0.4], [1.0, 0.0], [0.5, 0.5]])
    labels = np.array([1, 1, 0, 0])
    # top-label: 0.8 -> bin 3 (wrong? label 1 is argmax 1: correct), 0.6 -> bin 2 (wrong),
    # 1.0 -> bin 4 (correct), 0.5 -> bin 2 (argmax 0 by tie: correct).
    # bin 2: conf (0.6 + 0.5)/2 = 0.55, acc 0.5 -> 2/4 * 0.05; bin 3: |1 - 0.8| /4; bin 4: 0.
    expected = 2 / 4 * 0.05 + 1 / 4 * 0.2
    assert calibration.ece(labels, probs, 5) == pytest.approx(expected, abs=1e-7)
    # classwise, class 0: p0 = .2 (bin 0, y0=0), .6 (bin 2, 0), 1.0 (bin 4, 1), .5 (bin 2, 1)
    #   bin0 |0-.2|/4, bin2 2/4*|.5-.55|, bin4 0 -> .05 + .025 = .075
    # class 1: p1 = .8 (bin 3, 1), .4 (bin 1, 1), 0.0 (bin 0, 0), .5 (bin 2, 0)
    #   |1-.8|/4 + |1-.4|/4 + 0 + |0-.5|/4 = (.2 + .6 + .5)/4 = .325
    assert calibration.classwise_ece(labels, probs, 5) == pytest.approx((0.075 + 0.325) / 2,
                                                                        abs=1e-7)


def test_classes_absent_from_the_batch_still_count():
    probs = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1]])
    labels = np.array([0, 0])  # classes 1 and 2 never occur
    np.testing.assert_allclose(
        calibration.classwise_ece(labels, probs, 10), ref_classwise_ece(labels, probs, 10),
        atol=1e-7,
    )
    # class 1 contributes its mean predicted mass 0.25; class 2 contributes 0.1.
    np.testing.assert_allclose(calibration.classwise_ece(labels, probs, 10),
                               (0.35 + 0.25 + 0.1) / 3, atol=1e-7)


def test_binary_inputs_are_positive_class_probabilities():
    p1 = np.array([0.9, 0.2, 0.6])
    labels = np.array([1, 0, 0])
    two = np.stack([1 - p1, p1], 1)
    assert calibration.ece(labels, p1, 10) == pytest.approx(calibration.ece(labels, two, 10))


def test_well_calibrated_sample_ece_shrinks_with_n(rng):
    values = []
    for n in (500, 50_000):
        _, probs, labels = sample_calibrated(rng, n)
        values.append(calibration.ece(labels, probs))
    assert values[1] < values[0] and values[1] < 0.01, values


def test_nll_brier_accuracy_and_summary(random_case):
    labels, probs = random_case
    rows = np.arange(len(labels))
    assert calibration.nll(labels, probs) == pytest.approx(-np.log(probs[rows, labels]).mean())
    onehot = np.eye(probs.shape[1])[labels]
    assert calibration.brier(labels, probs) == pytest.approx(((probs - onehot) ** 2).sum(1).mean())
    logits = np.log(probs) + 3.0  # same softmax
    assert calibration.nll(labels, logits, from_logits=True) == pytest.approx(
        calibration.nll(labels, probs), rel=1e-9)
    # Before: accuracy and ece only. Now every entry against the references above.
    s = calibration.summary(labels, probs)
    assert s == pytest.approx({
        "accuracy": (probs.argmax(1) == labels).mean(),
        "nll": -np.log(probs[rows, labels]).mean(),
        "ece": ref_ece(labels, probs, 15),
        "classwise_ece": ref_classwise_ece(labels, probs, 15),
        "brier": ((probs - onehot) ** 2).sum(1).mean(),
    }, rel=1e-9, abs=1e-12)


def test_adaptive_ece_uses_equal_mass_bins():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])
    labels = np.array([0, 1, 0, 0])
    # 2 bins of 2 samples: {0.6, 0.7} acc 1 conf .65; {0.8, 0.9} acc .5 conf .85
    assert calibration.adaptive_ece(labels, probs, 2) == pytest.approx(0.5 * 0.35 + 0.5 * 0.35)


def test_bin_statistics(random_case):
    # Before: counts sum to N and empty bins are NaN. Now each bin against the reference binning.
    labels, probs = random_case
    labels, probs = labels[:40], probs[:40] ** 3 / (probs[:40] ** 3).sum(1, keepdims=True)
    stats = calibration.bin_statistics(labels, probs, 10)
    np.testing.assert_allclose(stats["edges"], np.linspace(0, 1, 11), atol=1e-12)
    members = {}
    for y, p in zip(labels, probs):
        members.setdefault(ref_bin(p.max(), 10), []).append((p.max(), float(p.argmax() == y)))
    for b in range(10):
        rows = members.get(b, [])
        assert stats["counts"][b] == len(rows), b
        if rows:
            assert stats["confidence"][b] == pytest.approx(np.mean([c for c, _ in rows]))
            assert stats["accuracy"][b] == pytest.approx(np.mean([a for _, a in rows]))
        else:
            assert np.isnan(stats["confidence"][b]) and np.isnan(stats["accuracy"][b])
    assert 0 < len(members) < 10  # some bins empty, some filled
    assert stats["ece"] == pytest.approx(ref_ece(labels, probs, 10), abs=1e-9)


# --- temperature fitting ------------------------------------------------------------


def scipy_temperature(logits, labels):
    z = np.asarray(logits, "float64")

    def objective(log_t):
        s = z / np.exp(log_t[0])
        s = s - s.max(1, keepdims=True)
        return -(s[np.arange(len(labels)), labels] - np.log(np.exp(s).sum(1))).mean()

    res = optimize.minimize(objective, x0=[0.0], method="L-BFGS-B", bounds=[(-8, 8)],
                            options={"ftol": 1e-15, "gtol": 1e-12})
    return float(np.exp(res.x[0]))


@pytest.mark.parametrize("factor", [3.0, 1.0, 1 / 3])
def test_fit_temperature_agrees_with_scipy_and_direction(rng, factor):
    logits, _, labels = sample_calibrated(rng, 2000)
    scaled = (logits * factor).astype("float32")
    fit = calibration.fit_temperature(scaled, labels)
    assert fit.converged
    assert float(fit) == pytest.approx(scipy_temperature(scaled, labels), rel=1e-4)
    assert fit.nll_after <= fit.nll_before + 1e-12
    if factor > 1:
        assert float(fit) > 1.5  # over-confident -> T > 1
    if factor < 1:
        assert float(fit) < 0.7  # under-confident -> T < 1


def test_fit_temperature_handles_saturated_logits(rng):
    logits, _, labels = sample_calibrated(rng, 1000)
    huge = (logits * 1000).astype("float32")  # entries ~1e3..1e4
    fit = calibration.fit_temperature(huge, labels, bounds=(0.01, 1e5))
    assert fit.converged and np.isfinite(fit.temperature) and fit.temperature > 0
    assert float(fit) == pytest.approx(scipy_temperature(huge, labels), rel=1e-4)


def test_fit_temperature_reports_an_optimum_outside_the_bounds():
    logits = np.array([[10.0, 0.0], [0.0, 10.0]])
    with pytest.warns(UserWarning, match=r"optimum is below T_min=0.01"):
        fit = calibration.fit_temperature(logits, [0, 1])
    assert not fit.converged and fit.temperature == pytest.approx(0.01)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: calibration.ece([0], [[np.nan, 1.0]]), r"NaN or Inf"),
        (lambda: calibration.ece([0, 1], [[0.5, 0.5]]), r"`labels` has 2 rows but `probs` has 1"),
        (lambda: calibration.ece([2], [[0.5, 0.5]]),
         r"`labels` must be class ids in \[0, 2\), got 2"),
        (lambda: calibration.ece([0], [[0.5, 0.5]], num_bins=0), r"`num_bins` must be >= 1, got 0"),
        (lambda: calibration.fit_temperature(np.zeros((0, 3)), []), r"empty"),
        (lambda: calibration.fit_temperature([[1.0, 0.0]], [0], bounds=(0, 1)),
         r"`bounds` must satisfy"),
        (lambda: ExpectedCalibrationError(num_bins=0), r"`num_bins` must be >= 1"),
        (lambda: ClasswiseECE(num_classes=1), r"`num_classes` must be >= 2"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- streaming metrics ------------------------------------------------------------------


def test_metrics_in_unequal_batches_equal_one_pass_and_reset(random_case):
    labels, probs = random_case
    ece_metric, cw_metric = ExpectedCalibrationError(num_bins=10), ClasswiseECE(5, num_bins=10)
    for metric in (ece_metric, cw_metric):
        for start, stop in ((0, 7), (7, 150), (150, 151), (151, 300)):
            metric.update_state(labels[start:stop], probs[start:stop].astype("float32"))
    assert float(ece_metric.result()) == pytest.approx(calibration.ece(labels, probs, 10), abs=1e-6)
    assert float(cw_metric.result()) == pytest.approx(
        calibration.classwise_ece(labels, probs, 10), abs=1e-6)
    for metric in (ece_metric, cw_metric):
        metric.reset_state()
        assert float(metric.result()) == 0.0
        metric.update_state(labels[:10], probs[:10].astype("float32"))
    assert float(ece_metric.result()) == pytest.approx(
        calibration.ece(labels[:10], probs[:10], 10), abs=1e-6)


def test_metric_sample_weights_equal_repetition(random_case):
    labels, probs = random_case
    weights = np.tile([1.0, 2.0, 0.0], 100).astype("float32")
    repeat = np.repeat(np.arange(300), weights.astype(int))
    m = ExpectedCalibrationError()
    m.update_state(labels, probs.astype("float32"), sample_weight=weights)
    assert float(m.result()) == pytest.approx(calibration.ece(labels[repeat], probs[repeat]),
                                              abs=1e-6)


def test_metrics_state_is_bins_only():
    metric = ClasswiseECE(num_classes=100, num_bins=15)
    assert [tuple(v.shape) for v in metric.variables] == [(3, 100, 15)]


def test_metrics_in_compile_evaluate_and_early_stopping(rng):
    logits, _, labels = sample_calibrated(rng, 256, k=3)
    x = logits.astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3)])
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[ExpectedCalibrationError(from_logits=True), ClasswiseECE(3, from_logits=True)],
    )
    stop = keras.callbacks.EarlyStopping(monitor="val_ece", patience=100)
    model.fit(x, labels, validation_data=(x, labels), epochs=2, batch_size=50, verbose=0,
              callbacks=[stop])
    assert stop.monitor_op is keras.ops.less  # lower is better, inferred
    results = model.evaluate(x, labels, batch_size=37, verbose=0, return_dict=True)
    preds = model.predict(x, verbose=0)
    assert results["ece"] == pytest.approx(calibration.ece(labels, preds, from_logits=True),
                                           abs=1e-5)
    assert results["classwise_ece"] == pytest.approx(
        calibration.classwise_ece(labels, preds, from_logits=True), abs=1e-5)


def test_metric_config_round_trip(rng):
    # Before: types and configs only. Now the revived metrics compute the same numbers.
    logits, probs, labels = sample_calibrated(rng, 200, k=4, scale=3.0)
    logits = logits.astype("float32")
    expected = {"ExpectedCalibrationError": ref_ece(labels, probs, 7),
                "ClasswiseECE": ref_classwise_ece(labels, probs, 9)}
    for metric in (ExpectedCalibrationError(num_bins=7, from_logits=True),
                   ClasswiseECE(4, num_bins=9, from_logits=True)):
        clone = type(metric).from_config(metric.get_config())
        assert clone.get_config() == metric.get_config()
        revived = keras.metrics.deserialize(keras.metrics.serialize(metric))
        assert type(revived) is type(metric)
        for m in (metric, clone, revived):
            m.update_state(labels, logits)
            assert float(m.result()) == pytest.approx(expected[type(metric).__name__], abs=1e-5)


def test_true_class_subset_ece_is_the_authors_variant(random_case):
    labels, probs = random_case
    expected = np.mean([ref_ece(labels[labels == j], probs[labels == j], 15) for j in range(5)])
    assert calibration.true_class_subset_ece(labels, probs) == pytest.approx(expected, abs=1e-6)
    assert calibration.true_class_subset_ece(labels, probs) != pytest.approx(
        calibration.classwise_ece(labels, probs))
