"""Fashion-MNIST study: every method on one small CNN, and the analyses behind the papers' claims.

Reads the IDX files of the Debian package `dataset-fashion-mnist`
(`/usr/share/datasets/fashion-mnist`; `apt-get install dataset-fashion-mnist`)
or `--fashion-mnist-dir`. For each seed: a random `--train-limit` subset of the
60,000 training images (5/6 train, 1/6 validation, stratified) and the full
10,000-image test set; the CNN of `keras-smooth compare` (two conv + pooling layers,
128 units), Adam 1e-3, `--epochs` epochs keeping the best
validation-NLL epoch. Every method is trained once at a fixed setting (no
grid search; listed in the report). Reported on the test set: accuracy, NLL,
ECE, classwise ECE, each also after temperature scaling fitted on the
validation split.

Analyses (seed 0): the learned LLS Q and LS++ C with each class's two most
related classes; L1-normalised cosine distances between class centres of
penultimate features (LLS §5.2) for one-hot, LS and LLS, with their
off-diagonal spread (std / mean; 0 = all classes equidistant); template-plane
projections (Müller et al.; `[Re]` §4); the distillation study (a student of
the same architecture trained only on the teacher's probabilities, T = 1,
from No LS, LS, ILS, LLS and LS++ teachers, and from the learned Q / C alone).
The claims of the papers are then checked against these numbers.

    python benchmarks/fashion_mnist_study.py [--seeds 2] [--epochs 8] [--train-limit 10000]
        [--output benchmarks/results]

Writes `OUTPUT/fashion_mnist_study.md` and figures in `OUTPUT/fashion_mnist/`.
The default run takes about 30 minutes on 2 CPU cores.
"""

import argparse
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_smooth import analysis, calibration, datasets, plots  # noqa: E402
from keras_smooth.workflows import methods as methods_module  # noqa: E402
from keras_smooth.workflows.compare import default_model, evaluate  # noqa: E402
from keras_smooth.workflows.teacher import train_teacher  # noqa: E402

SETTING = {"epsilon": (0.1,), "p1": (0.9,), "p2": (1.5,), "temperature": (2.0,), "alpha": (0.1,)}
STUDIED = ("ls", "ils", "lls", "lspp") + methods_module.BASELINE_METHODS
METRICS = (("accuracy", "acc", max), ("nll", "NLL", min), ("ece", "ECE", min), ("classwise_ece", "cwECE", min))


def run_seed(seed, args, keep_models):
    data = datasets.load("fashion_mnist", seed=seed, train_limit=args.train_limit,
                         **({"directory": args.fashion_mnist_dir} if args.fashion_mnist_dir else {}))
    started = time.perf_counter()
    teacher = train_teacher(default_model, data, epochs=args.epochs, batch_size=args.batch_size, seed=seed)
    print(f"  seed {seed}: No LS trained in {time.perf_counter() - started:.0f} s", flush=True)
    val = {"no_ls": teacher.logits["val"]}
    test = {"no_ls": teacher.logits["test"]}
    trained = {"no_ls": {"model": teacher.model, "train_logits": teacher.logits["train"], "params": {}}}
    for method in STUDIED:
        started = time.perf_counter()
        result = methods_module.train_method(method, data, teacher, default_model, grid=SETTING, epochs=args.epochs,
                                             batch_size=args.batch_size, seed=seed, extra_inputs=data.x_train)
        val[method], test[method] = result["val_logits"], result["test_logits"]
        trained[method] = {"model": result["model"] if keep_models else None, "matrix": result["matrix"],
                           "train_logits": result["extra_logits"], "params": result["params"]}
        print(f"  seed {seed}: {methods_module.LABELS[method]} trained in {time.perf_counter() - started:.0f} s",
              flush=True)
    rows = {}
    for method in test:
        t = float(calibration.fit_temperature(val[method], data.y_val))
        rows[method] = {"raw": evaluate(data, test[method]), "ts": evaluate(data, test[method], t), "T": t}
    return data, teacher, trained, rows


def mean_rows(per_seed):
    out = {}
    for method in per_seed[0]:
        out[method] = {}
        for kind in ("raw", "ts"):
            out[method][kind] = {k: float(np.mean([s[method][kind][k] for s in per_seed])) for k, _, _ in METRICS}
            out[method][kind + "_se"] = {
                k: float(np.std([s[method][kind][k] for s in per_seed], ddof=1) / np.sqrt(len(per_seed)))
                if len(per_seed) > 1 else float("nan") for k, _, _ in METRICS}
        out[method]["T"] = float(np.mean([s[method]["T"] for s in per_seed]))
    return out


def table(rows, kind):
    lines = ["| method | " + " | ".join(title for _, title, _ in METRICS) + (" | T |" if kind == "ts" else " |"),
             "|---" * (len(METRICS) + 1 + (kind == "ts")) + "|"]
    best = {k: pick(r[kind][k] for r in rows.values()) for k, _, pick in METRICS}
    for method, r in rows.items():
        cells = []
        for k, _, _ in METRICS:
            se = r[kind + "_se"][k]
            text = f"{r[kind][k]:.4f}" + (f" ± {se:.4f}" if np.isfinite(se) else "")
            cells.append(f"**{text}**" if np.isclose(r[kind][k], best[k]) else text)
        lines.append(f"| {methods_module.LABELS[method]} | " + " | ".join(cells)
                     + (f" | {r['T']:.2f} |" if kind == "ts" else " |"))
    return "\n".join(lines)


def claim(text, holds, evidence):
    return f"| {text} | {'holds' if holds else '**does not hold**'} | {evidence} |"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--train-limit", type=int, default=10000)
    parser.add_argument("--fashion-mnist-dir", default=None)
    parser.add_argument("--output", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = parser.parse_args()
    figures = os.path.join(args.output, "fashion_mnist")
    os.makedirs(figures, exist_ok=True)
    started = time.perf_counter()
    print(f"keras {keras.__version__}, tensorflow {tf.__version__}, {platform.machine()}, {os.cpu_count()} CPUs",
          flush=True)

    per_seed = []
    for seed in range(args.seeds):
        data, teacher, trained, rows = run_seed(seed, args, keep_models=seed == 0)
        per_seed.append(rows)
        if seed == 0:
            first = (data, teacher, trained)
    rows = mean_rows(per_seed)
    data, teacher, trained = first
    names = data.class_names

    # Learned matrices and their related classes.
    q = np.asarray(trained["lls"]["matrix"])
    c = np.asarray(trained["lspp"]["matrix"])
    plots.save_figure(plots.matrix_heatmaps({"LLS Q-matrix": q, "LS++ C-matrix": c}, names),
                      os.path.join(figures, "matrices.png"))
    related = {"LLS Q": analysis.top_related_classes(q, names), "LS++ C": analysis.top_related_classes(c, names)}

    # Class-centre distances of penultimate features (training data) and projections.
    distances, spread, projections = {}, {}, {}
    for method, label in (("no_ls", "one-hot"), ("ls", "LS"), ("lls", "LLS")):
        model = trained[method]["model"]
        features = analysis.penultimate_features(model, data.x_train)
        distances[label] = analysis.cosine_distances(analysis.class_centres(features, data.y_train, 10))
        spread[label] = analysis.offdiagonal_spread(distances[label])
        projections[label] = analysis.penultimate_projection(model, data.x_test, data.y_test, classes=(0, 1, 2))
    plots.save_figure(plots.distance_heatmaps(distances, names), os.path.join(figures, "distances.png"))
    plots.save_figure(plots.penultimate_projections(projections, names), os.path.join(figures, "projection.png"))
    plots.save_figure(plots.confusion_heatmap(data.y_test, trained["no_ls"]["model"].predict(data.x_test, verbose=0),
                                              names, title="No LS, test split"),
                      os.path.join(figures, "confusion_no_ls.png"))
    confusion = analysis.confusion_matrix(data.y_test, trained["no_ls"]["model"].predict(data.x_test, verbose=0), 10)
    confused = analysis.top_related_classes(confusion, names)

    # Distillation study: the same CNN as student, teacher probabilities only (beta = 1, T = 1).
    print("  distillation study ...", flush=True)
    teachers = {methods_module.LABELS[m]: trained[m]["train_logits"] for m in ("no_ls", "ls", "ils", "lls", "lspp")}
    distill = analysis.distillation_study(
        default_model, data, teachers=teachers,
        matrices={"LLS-ST (Q alone)": (q, 0.1), "PT-LS++ (C alone)": (c, 0.1)},
        epochs=args.epochs, batch_size=args.batch_size, seed=0)

    raw, ts = (lambda m, k: rows[m]["raw"][k]), (lambda m, k: rows[m]["ts"][k])
    claims = [
        claim("ILS beats LS in test NLL (ILS Table III)", raw("ils", "nll") < raw("ls", "nll"),
              f"{raw('ils', 'nll'):.4f} vs {raw('ls', 'nll'):.4f}"),
        claim("ILS beats LS in accuracy (ILS Table III)", raw("ils", "accuracy") > raw("ls", "accuracy"),
              f"{raw('ils', 'accuracy'):.4f} vs {raw('ls', 'accuracy'):.4f}"),
        claim("ILS beats Dis, cLS, BS_Soft and Beta in NLL (ILS Table III)",
              all(raw("ils", "nll") < raw(m, "nll") for m in ("dis", "cls", "bs_soft", "beta")),
              ", ".join(f"{methods_module.LABELS[m]} {raw(m, 'nll'):.4f}" for m in ("dis", "cls", "bs_soft", "beta"))
              + f"; ILS {raw('ils', 'nll'):.4f}"),
        claim("LS + TempS is worse than No LS + TempS in classwise ECE (ILS §III)",
              ts("ls", "classwise_ece") > ts("no_ls", "classwise_ece"),
              f"{ts('ls', 'classwise_ece'):.4f} vs {ts('no_ls', 'classwise_ece'):.4f}"),
        claim("LLS beats LS, OLS, TF-KD reg and Zipf's LS in accuracy (LLS Tables 1-3)",
              all(raw("lls", "accuracy") > raw(m, "accuracy") for m in ("ls", "ols", "tfkd", "zipf")),
              ", ".join(f"{methods_module.LABELS[m]} {raw(m, 'accuracy'):.4f}" for m in ("ls", "ols", "tfkd", "zipf"))
              + f"; LLS {raw('lls', 'accuracy'):.4f}"),
        claim("LS++ beats LS, OLS, TF-KD reg, Zipf's LS and MbLS in accuracy (LS++ Tables 1-3)",
              all(raw("lspp", "accuracy") > raw(m, "accuracy") for m in ("ls", "ols", "tfkd", "zipf", "mbls")),
              ", ".join(f"{methods_module.LABELS[m]} {raw(m, 'accuracy'):.4f}"
                        for m in ("ls", "ols", "tfkd", "zipf", "mbls")) + f"; LS++ {raw('lspp', 'accuracy'):.4f}"),
        claim("LS makes class centres more equidistant than one-hot (Müller et al.; LLS §5.2)",
              spread["LS"] < spread["one-hot"], f"spread LS {spread['LS']:.3f} vs one-hot {spread['one-hot']:.3f}"),
        claim("LLS keeps the inter-class structure LS erases (LLS §5.2)", spread["LLS"] > spread["LS"],
              f"spread LLS {spread['LLS']:.3f} vs LS {spread['LS']:.3f}"),
        claim("A teacher trained with LS distills worse than one without (Müller et al.; [Re] §6; ILS Table II)",
              distill["LS"]["accuracy"] < distill["No LS"]["accuracy"] and distill["LS"]["nll"] > distill["No LS"]["nll"],
              f"student acc {distill['LS']['accuracy']:.4f} vs {distill['No LS']['accuracy']:.4f}, "
              f"NLL {distill['LS']['nll']:.4f} vs {distill['No LS']['nll']:.4f}"),
        claim("An ILS teacher distills at least as well as a No LS teacher (ILS Appendix D)",
              distill["ILS"]["accuracy"] >= distill["No LS"]["accuracy"],
              f"student acc {distill['ILS']['accuracy']:.4f} vs {distill['No LS']['accuracy']:.4f}"),
        claim("A student taught by the learned Q alone beats plain training (LLS-ST, LLS §5.3)",
              distill["LLS-ST (Q alone)"]["accuracy"] > raw("no_ls", "accuracy"),
              f"acc {distill['LLS-ST (Q alone)']['accuracy']:.4f} vs No LS {raw('no_ls', 'accuracy'):.4f}"),
        claim("A student taught by the learned C alone beats plain training (PT-LS++, LS++ §5.3)",
              distill["PT-LS++ (C alone)"]["accuracy"] > raw("no_ls", "accuracy"),
              f"acc {distill['PT-LS++ (C alone)']['accuracy']:.4f} vs No LS {raw('no_ls', 'accuracy'):.4f}"),
    ]

    minutes = (time.perf_counter() - started) / 60
    settings = ", ".join(f"{methods_module.LABELS[m]}: " + (", ".join(f"{k}={v:g}" for k, v in
                                                                        trained[m]["params"].items()) or "paper defaults")
                         for m in STUDIED)
    lines = [
        "# Fashion-MNIST study",
        "",
        f"Command: `python benchmarks/fashion_mnist_study.py --seeds {args.seeds} --epochs {args.epochs} "
        f"--train-limit {args.train_limit}`. keras {keras.__version__}, tensorflow {tf.__version__}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs; {minutes:.0f} minutes. Data: "
        f"{data.extras.get('source', 'IDX files')}; per seed {len(data.y_train)} training / {len(data.y_val)} "
        f"validation images drawn from the 60,000, all 10,000 test images. CNN of `keras-smooth compare`, "
        f"Adam 1e-3, batch {args.batch_size}, {args.epochs} epochs, best validation-NLL epoch. Mean "
        f"± standard error over {args.seeds} seed(s). Bold: best in a column.",
        "",
        f"Fixed settings (no search): {settings}. No LS is the teacher of ILS, Dis and Beta.",
        "",
        "## Test metrics",
        "",
        table(rows, "raw"),
        "",
        "## Test metrics after temperature scaling (T fitted on the validation split)",
        "",
        table(rows, "ts"),
        "",
        "## Claims of the papers on this data",
        "",
        "| claim | on Fashion-MNIST here | evidence |",
        "|---|---|---|",
        *claims,
        "",
        "## Learned class matrices (seed 0): each class's two most related classes",
        "",
        "| class | LLS Q | LS++ C | most confused by No LS (test) |",
        "|---|---|---|---|",
        *[f"| {n} | " + " | ".join(", ".join(f"{o} {v:.3f}" for o, v in d[n]) for d in
                                    (related["LLS Q"], related["LS++ C"], confused)) + " |" for n in names],
        "",
        "![matrices](fashion_mnist/matrices.png)",
        "",
        "## Class-centre distances of penultimate features (seed 0, training images)",
        "",
        "Off-diagonal spread of the L1-normalised cosine distances (std / mean; 0 = all classes equidistant): "
        + ", ".join(f"{k} {v:.3f}" for k, v in spread.items()) + ".",
        "",
        "![distances](fashion_mnist/distances.png)",
        "",
        "![projection](fashion_mnist/projection.png)",
        "",
        "## Distillation study (seed 0): the same CNN trained on each teacher's probabilities (beta = 1, T = 1)",
        "",
        "| teacher | student acc | NLL | ECE | cwECE | teacher smoothness gamma |",
        "|---|---|---|---|---|---|",
        *[f"| {name} | {r['accuracy']:.4f} | {r['nll']:.4f} | {r['ece']:.4f} | {r['classwise_ece']:.4f} | "
          + (f"{r['smoothness']:.3f} |" if "smoothness" in r else "- |") for name, r in distill.items()],
        f"| (no teacher: No LS itself) | {raw('no_ls', 'accuracy'):.4f} | {raw('no_ls', 'nll'):.4f} | "
        f"{raw('no_ls', 'ece'):.4f} | {raw('no_ls', 'classwise_ece'):.4f} | - |",
    ]
    report = "\n".join(lines) + "\n"
    path = os.path.join(args.output, "fashion_mnist_study.md")
    with open(path, "w") as f:
        f.write(report)
    print(report)
    print(f"wrote {path} and figures in {figures}")


if __name__ == "__main__":
    main()
