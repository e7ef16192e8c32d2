"""NumPy references written from the papers' equations (float64).

Nothing here imports keras_smooth: these are the independent expectations.
"""

import numpy as np

EPS = 1e-7  # keras.config.epsilon(), the clamp documented by the losses


def one_hot(labels, k):
    labels = np.asarray(labels).reshape(-1)
    return np.eye(k)[labels]


def softmax(z, axis=-1):
    z = np.asarray(z, dtype="float64")
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(z):
    z = np.asarray(z, dtype="float64")
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def uniform_ls(labels, k, eps):
    """ILS paper §II: y_LS = y (1 - eps) + eps / K."""
    return one_hot(labels, k) * (1 - eps) + eps / k


def ils1(labels, probs, p1, p2, cap=0.2):
    """ILS paper Eq. 3, applied row by row."""
    probs = np.asarray(probs, dtype="float64")
    k = probs.shape[1]
    out = np.zeros_like(probs)
    for i, t in enumerate(np.asarray(labels).reshape(-1)):
        eps = min(cap, p2 * (probs[i, t] - p1) ** 2)
        out[i] = eps / k
        out[i, t] += 1 - eps
    return out


def ils2_row(t, probs_row, eps):
    """ILS paper Eq. 4 for one instance: y_j = eps p_j / (1 - p_t), y_t = 1 - eps."""
    row = eps * probs_row / (1 - probs_row[t])
    row[t] = 1 - eps
    return row


def ils2(labels, probs, eps):
    probs = np.asarray(probs, dtype="float64")
    return np.stack([ils2_row(t, probs[i], eps) for i, t in enumerate(np.asarray(labels).reshape(-1))])


def ils(labels, eps_probs, dist_probs, p1, p2, cap=0.2):
    rows = []
    for i, t in enumerate(np.asarray(labels).reshape(-1)):
        eps = min(cap, p2 * (eps_probs[i, t] - p1) ** 2)
        rows.append(ils2_row(t, np.asarray(dist_probs[i], dtype="float64"), eps))
    return np.stack(rows)


def cross_entropy(targets, log_probs):
    return -(targets * log_probs).sum(-1)


def lls(labels, logits, q, alpha):
    """LLS paper Eq. 4-5 / Appendix A: 0.5 (KL(t||p) + KL(p||t))."""
    k = q.shape[0]
    t = (1 - alpha) * one_hot(labels, k) + alpha * q[np.asarray(labels).reshape(-1)]
    lp = log_softmax(logits)
    p = np.exp(lp)
    lt = np.log(np.maximum(t, EPS))
    return 0.5 * ((t * (lt - lp)).sum(-1) + (p * (lp - lt)).sum(-1))


def lspp(labels, logits, c, alpha):
    """LS++ §3.2 value: 0.5 (H(t, p) + H(p, t)), t = (1 - a) y + a C_y."""
    k = c.shape[0]
    t = (1 - alpha) * one_hot(labels, k) + alpha * c[np.asarray(labels).reshape(-1)]
    lp = log_softmax(logits)
    return 0.5 * (cross_entropy(t, lp) + cross_entropy(np.exp(lp), np.log(np.maximum(t, EPS))))


def distillation(labels, student_logits, teacher_logits, beta, tau):
    """[Re] Eq. 2 as stated in the issue: (1 - b) H(y, q) + b H(p^tau, q^tau)."""
    k = student_logits.shape[1]
    hard = cross_entropy(one_hot(labels, k), log_softmax(student_logits))
    soft = cross_entropy(softmax(np.asarray(teacher_logits) / tau), log_softmax(np.asarray(student_logits) / tau))
    return (1 - beta) * hard + beta * soft


def random_stochastic(k, rng, zero_diagonal=False):
    m = rng.random((k, k)) + 0.05
    if zero_diagonal:
        np.fill_diagonal(m, 0.0)
    return m / m.sum(1, keepdims=True)
