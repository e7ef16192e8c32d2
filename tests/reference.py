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


# --- baselines, from the formulas of their papers ---------------------------------------


def soft_bootstrapping(labels, logits, beta):
    """Reed et al. 2015: -sum (beta y + (1 - beta) q) log q."""
    q = softmax(logits)
    y = one_hot(labels, logits.shape[1])
    return -((beta * y + (1 - beta) * q) * np.log(q)).sum(axis=1)


def flsd53(labels, logits):
    """Mukhoti et al. 2020: gamma 5 if p_t < 0.2 else 3; -(1 - p_t)^gamma log p_t."""
    out = []
    for row, t in zip(softmax(logits), np.asarray(labels).reshape(-1)):
        gamma = 5.0 if row[t] < 0.2 else 3.0
        out.append(-((1 - row[t]) ** gamma) * np.log(row[t]))
    return np.array(out)


def mbls(labels, logits, margin, weight):
    """Liu et al. 2022: CE + weight * sum_k max(0, max_j z_j - z_k - margin)."""
    ce = -np.log(softmax(logits)[np.arange(len(logits)), np.asarray(labels).reshape(-1)])
    d = logits.max(axis=1, keepdims=True) - logits
    return ce + weight * np.maximum(d - margin, 0).sum(axis=1)


def tf_kd_reg(labels, logits, alpha, tau, a):
    """Yuan et al. 2020: (1 - alpha) CE + alpha tau^2 KL(softmax(p_d / tau) || softmax(z / tau))."""
    k = logits.shape[1]
    y = one_hot(labels, k)
    virtual = np.where(y > 0, a, (1 - a) / (k - 1))
    teacher = softmax(virtual / tau)
    student = softmax(logits / tau)
    kl = (teacher * (np.log(teacher) - np.log(student))).sum(axis=1)
    ce = -(y * np.log(softmax(logits))).sum(axis=1)
    return (1 - alpha) * ce + alpha * tau**2 * kl


def zipf(labels, logits, weight, power):
    """Liang et al. 2022: true class rank 1, others by descending logit; mass r^-power; CE + w KL(z || q)."""
    out, targets = [], []
    for row, t in zip(np.asarray(logits, dtype="float64"), np.asarray(labels).reshape(-1)):
        others = [k for k in np.argsort(-row, kind="stable") if k != t]
        rank = {t: 1}
        rank.update({k: r + 2 for r, k in enumerate(others)})
        mass = np.array([rank[k] ** -power for k in range(len(row))])
        z = mass / mass.sum()
        q = softmax(row[None])[0]
        out.append(-np.log(q[t]) + weight * (z * (np.log(z) - np.log(q))).sum())
        targets.append(z)
    return np.array(out), np.array(targets)
