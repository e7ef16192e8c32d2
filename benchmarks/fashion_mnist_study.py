"""Fashion-MNIST study: every method on one small CNN, and the analyses behind the papers' claims.

Reads the IDX files of the Debian package `dataset-fashion-mnist`
(`/usr/share/datasets/fashion-mnist`; `apt-get install dataset-fashion-mnist`)
or `--fashion-mnist-dir`. For each seed: a random `--train-limit` subset of the
60,000 training images (5/6 train, 1/6 validation, stratified) and the full
10,000-image test set; the CNN of `keras-smooth compare` (two conv + pooling layers,
128 units), Adam 1e-3, `--epochs` epochs keeping the best
validation-NLL epoch. Every method of the registry (`--methods`, default: all
built-in groups) is trained once at its "quick" setting (no grid search;
listed in the report); "+ TempS" rows are replaced by temperature scaling every
method. Reported on the test set: accuracy, NLL, ECE, classwise ECE, each
also after temperature scaling fitted on the validation split.

Analyses (seed 0): every class matrix a method learned or built (LLS Q, LS++ C,
OLS, cLS) with each class's two most related classes; L1-normalised cosine
distances between class centres of penultimate features (LLS §5.2) for one-hot,
LS and LLS, with their off-diagonal spread (std / mean; 0 = all classes
equidistant); template-plane projections (Müller et al.; `[Re]` §4); the
distillation study (a student of the same architecture trained only on the
teacher's probabilities, T = 1, from No LS, LS, ILS, LLS and LS++ teachers, and
from the learned Q / C alone). The claims of the papers, stated with the
papers' method names (our labels), are then checked against these numbers;
a claim whose methods were not run is left out.

    python benchmarks/fashion_mnist_study.py [--seeds 2] [--epochs 8] [--train-limit 10000]
        [--methods all] [--output benchmarks/results]

Writes `OUTPUT/fashion_mnist_study.md` and figures in `OUTPUT/fashion_mnist/`.
The default run takes about 35 minutes on 2 CPU cores.
"""

import argparse
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_smooth import analysis, calibration, datasets, methods, plots  # noqa: E402
from keras_smooth.models import default_model  # noqa: E402
from keras_smooth.workflows.compare import evaluate  # noqa: E402
from keras_smooth.workflows.methods import train_method  # noqa: E402
from keras_smooth.workflows.report import mean_and_standard_error  # noqa: E402
from keras_smooth.training.teacher import train_teacher  # noqa: E402

METRICS = (("accuracy", "acc", max), ("nll", "NLL", min), ("ece", "ECE", min),
           ("classwise_ece", "cwECE", min))
TEACHER = next(methods.get(n) for n in methods.names() if methods.get(n).uses_teacher_model)
# Labels (the papers' names) of the analyses: features and distillation teachers.
FEATURES = (("No LS", "one-hot"), ("LS", "LS"), ("LLS", "LLS"))
DISTILLED = ("No LS", "LS", "ILS", "LLS", "LS++")
SUBSTITUTES = (("LLS", "LLS-ST (Q alone)"), ("LS++", "PT-LS++ (C alone)"))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--train-limit", type=int, default=10000)
    parser.add_argument("--methods", default="all",
                        help="methods, groups or module:attribute (keras_smooth.methods.parse)")
    parser.add_argument("--fashion-mnist-dir", default=None)
    parser.add_argument("--output", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results"))
    args = parser.parse_args(argv)
    args.studied = [m for m in methods.parse(args.methods)
                    if m.temperature_of is None and not m.uses_teacher_model]
    return args


def run_seed(seed, args, keep_models):
    """Train the teacher and every studied method; test metrics per label, raw and scaled."""
    data = datasets.load("fashion_mnist", seed=seed, train_limit=args.train_limit,
                         **({"directory": args.fashion_mnist_dir} if args.fashion_mnist_dir
                            else {}))
    started = time.perf_counter()
    teacher = train_teacher(default_model, data, epochs=args.epochs, batch_size=args.batch_size,
                            seed=seed)
    print(f"  seed {seed}: {TEACHER.label} trained in {time.perf_counter() - started:.0f} s",
          flush=True)
    logits = {TEACHER.label: (teacher.logits["val"], teacher.logits["test"])}
    trained = {TEACHER.label: {"model": teacher.model, "train_logits": teacher.logits["train"],
                               "params": {}, "matrix": None}}
    for method in args.studied:
        started = time.perf_counter()
        result = train_method(method, data, teacher, default_model, grid="quick",
                              epochs=args.epochs, batch_size=args.batch_size, seed=seed,
                              extra_inputs=data.x_train)
        logits[method.label] = (result["val_logits"], result["test_logits"])
        trained[method.label] = {"model": result["model"] if keep_models else None,
                                 "matrix": result["matrix"], "params": result["params"],
                                 "train_logits": result["extra_logits"]}
        print(f"  seed {seed}: {method.label} trained in {time.perf_counter() - started:.0f} s",
              flush=True)
    rows = {}
    for label, (val, test) in logits.items():
        t = float(calibration.fit_temperature(val, data.y_val))
        rows[label] = {"raw": evaluate(data, test), "ts": evaluate(data, test, t), "T": t}
    return data, teacher, trained, rows


def mean_rows(per_seed):
    out = {}
    for label in per_seed[0]:
        out[label] = {"T": float(np.mean([s[label]["T"] for s in per_seed]))}
        for kind in ("raw", "ts"):
            stats = {k: mean_and_standard_error([s[label][kind][k] for s in per_seed])
                     for k, _, _ in METRICS}
            out[label][kind] = {k: float(v[0]) for k, v in stats.items()}
            out[label][kind + "_se"] = {k: float(v[1]) for k, v in stats.items()}
    return out


def table(rows, kind):
    lines = ["| method | " + " | ".join(title for _, title, _ in METRICS)
             + (" | T |" if kind == "ts" else " |"),
             "|---" * (len(METRICS) + 1 + (kind == "ts")) + "|"]
    best = {k: pick(r[kind][k] for r in rows.values()) for k, _, pick in METRICS}
    for label, r in rows.items():
        cells = []
        for k, _, _ in METRICS:
            se = r[kind + "_se"][k]
            text = f"{r[kind][k]:.4f}" + (f" ± {se:.4f}" if np.isfinite(se) else "")
            cells.append(f"**{text}**" if np.isclose(r[kind][k], best[k]) else text)
        lines.append(f"| {label} | " + " | ".join(cells)
                     + (f" | {r['T']:.2f} |" if kind == "ts" else " |"))
    return "\n".join(lines)


def claim(text, holds, evidence):
    return f"| {text} | {'holds' if holds else '**does not hold**'} | {evidence} |"


def matrix_analysis(trained, data, figures):
    """Heat maps of every class matrix and each class's two most related classes."""
    names = data.class_names
    matrices = {f"{label} matrix": np.asarray(t["matrix"]) for label, t in trained.items()
                if t["matrix"] is not None}
    if matrices:
        plots.save_figure(plots.matrix_heatmaps(matrices, names),
                          os.path.join(figures, "matrices.png"))
    related = {title: analysis.top_related_classes(m, names) for title, m in matrices.items()}
    no_ls = trained[TEACHER.label]["model"].predict(data.x_test, verbose=0)
    plots.save_figure(plots.confusion_heatmap(data.y_test, no_ls, names,
                                              title=f"{TEACHER.label}, test split"),
                      os.path.join(figures, "confusion_no_ls.png"))
    confusion = analysis.confusion_matrix(data.y_test, no_ls, data.num_classes)
    related[f"most confused by {TEACHER.label} (test)"] = analysis.top_related_classes(
        confusion, names)
    return related


def feature_analysis(trained, data, figures):
    """Class-centre distances and projections of penultimate features; spread per model."""
    distances, spread, projections = {}, {}, {}
    for label, short in FEATURES:
        model = trained.get(label, {}).get("model")
        if model is None:
            continue
        features = analysis.penultimate_features(model, data.x_train)
        centres = analysis.class_centres(features, data.y_train, data.num_classes)
        distances[short] = analysis.cosine_distances(centres)
        spread[short] = analysis.offdiagonal_spread(distances[short])
        projections[short] = analysis.penultimate_projection(model, data.x_test, data.y_test,
                                                             classes=(0, 1, 2))
    if distances:
        plots.save_figure(plots.distance_heatmaps(distances, data.class_names),
                          os.path.join(figures, "distances.png"))
        plots.save_figure(plots.penultimate_projections(projections, data.class_names),
                          os.path.join(figures, "projection.png"))
    return spread


def distillation(trained, data, args):
    """Students of the same CNN from each teacher's probabilities and each learned matrix."""
    print("  distillation study ...", flush=True)
    teachers = {label: trained[label]["train_logits"] for label in DISTILLED if label in trained}
    matrices = {name: (np.asarray(trained[label]["matrix"]), trained[label]["params"]["alpha"])
                for label, name in SUBSTITUTES
                if label in trained and trained[label]["matrix"] is not None}
    return analysis.distillation_study(default_model, data, teachers=teachers, matrices=matrices,
                                       epochs=args.epochs, batch_size=args.batch_size, seed=0)


def _beats(rows, label, others, key, kind="raw"):
    """(holds, evidence) of "`label` is better than each of `others` in `key`"."""
    better = max if key == "accuracy" else min
    mine = rows[label][kind][key]
    holds = all(better(mine, rows[o][kind][key]) == mine != rows[o][kind][key] for o in others)
    evidence = ", ".join(f"{o} {rows[o][kind][key]:.4f}" for o in others)
    return holds, f"{evidence}; {label} {mine:.4f}"


def metric_claims(rows):
    """The papers' claims about test metrics, for the labels that were run."""
    wanted = [
        ("ILS beats LS in test NLL (ILS Table III)", "ILS", ("LS",), "nll", "raw"),
        ("ILS beats LS in accuracy (ILS Table III)", "ILS", ("LS",), "accuracy", "raw"),
        ("ILS beats Dis, cLS, BS_Soft and Beta in NLL (ILS Table III)", "ILS",
         ("Dis", "cLS", "BS_Soft", "Beta"), "nll", "raw"),
        ("LS + TempS is worse than No LS + TempS in classwise ECE (ILS §III)", "No LS", ("LS",),
         "classwise_ece", "ts"),
        ("LLS beats LS, OLS, TF-KD reg and Zipf's LS in accuracy (LLS Tables 1-3)", "LLS",
         ("LS", "OLS", "TF-KD reg", "Zipf's LS"), "accuracy", "raw"),
        ("LS++ beats LS, OLS, TF-KD reg, Zipf's LS and MbLS in accuracy (LS++ Tables 1-3)",
         "LS++", ("LS", "OLS", "TF-KD reg", "Zipf's LS", "MbLS"), "accuracy", "raw"),
    ]
    return [claim(text, *_beats(rows, label, others, key, kind))
            for text, label, others, key, kind in wanted
            if label in rows and all(o in rows for o in others)]


def structure_claims(rows, spread, distill):
    """The papers' claims about features and distillation, where their inputs exist."""
    out = []
    if {"LS", "one-hot"} <= set(spread):
        out.append(claim("LS makes class centres more equidistant than one-hot (Müller et al.; "
                         "LLS §5.2)", spread["LS"] < spread["one-hot"],
                         f"spread LS {spread['LS']:.3f} vs one-hot {spread['one-hot']:.3f}"))
    if {"LS", "LLS"} <= set(spread):
        out.append(claim("LLS keeps the inter-class structure LS erases (LLS §5.2)",
                         spread["LLS"] > spread["LS"],
                         f"spread LLS {spread['LLS']:.3f} vs LS {spread['LS']:.3f}"))
    d, teacher = distill, TEACHER.label
    if {"LS", teacher} <= set(d):
        out.append(claim(
            "A teacher trained with LS distills worse than one without (Müller et al.; [Re] §6; "
            "ILS Table II)", d["LS"]["accuracy"] < d[teacher]["accuracy"]
            and d["LS"]["nll"] > d[teacher]["nll"],
            f"student acc {d['LS']['accuracy']:.4f} vs {d[teacher]['accuracy']:.4f}, "
            f"NLL {d['LS']['nll']:.4f} vs {d[teacher]['nll']:.4f}"))
    if {"ILS", teacher} <= set(d):
        out.append(claim("An ILS teacher distills at least as well as a No LS teacher (ILS "
                         "Appendix D)", d["ILS"]["accuracy"] >= d[teacher]["accuracy"],
                         f"student acc {d['ILS']['accuracy']:.4f} vs "
                         f"{d[teacher]['accuracy']:.4f}"))
    for name, text in (
            ("LLS-ST (Q alone)", "the learned Q alone beats plain training (LLS-ST, LLS §5.3)"),
            ("PT-LS++ (C alone)",
             "the learned C alone beats plain training (PT-LS++, LS++ §5.3)")):
        if name in d:
            plain = rows[teacher]["raw"]["accuracy"]
            out.append(claim(f"A student taught by {text}", d[name]["accuracy"] > plain,
                             f"acc {d[name]['accuracy']:.4f} vs {teacher} {plain:.4f}"))
    return out


def header_lines(args, data, trained, minutes):
    settings = ", ".join(f"{label}: " + (", ".join(f"{k}={v:g}" for k, v in t["params"].items())
                                         or "paper defaults")
                         for label, t in trained.items() if label != TEACHER.label)
    return [
        "# Fashion-MNIST study",
        "",
        f"Command: `python benchmarks/fashion_mnist_study.py --seeds {args.seeds} --epochs "
        f"{args.epochs} --train-limit {args.train_limit} --methods {args.methods}`. keras "
        f"{keras.__version__}, tensorflow {tf.__version__}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs; {minutes:.0f} minutes. Data: "
        f"{data.extras.get('source', 'IDX files')}; per seed {len(data.y_train)} training / "
        f"{len(data.y_val)} validation images drawn from the 60,000, all 10,000 test images. "
        f"CNN of `keras-smooth compare`, Adam 1e-3, batch {args.batch_size}, {args.epochs} "
        f"epochs, best validation-NLL epoch. Mean ± standard error over {args.seeds} seed(s). "
        "Bold: best in a column.",
        "",
        f"Fixed settings (no search): {settings}. {TEACHER.label} is the teacher of the methods "
        "that need one.",
    ]


def report_lines(args, data, trained, rows, analyses, minutes):
    related, spread, distill, claims = analyses
    names, raw = data.class_names, rows[TEACHER.label]["raw"]
    return header_lines(args, data, trained, minutes) + [
        "", "## Test metrics", "", table(rows, "raw"), "",
        "## Test metrics after temperature scaling (T fitted on the validation split)", "",
        table(rows, "ts"), "",
        "## Claims of the papers on this data", "",
        "| claim | on Fashion-MNIST here | evidence |", "|---|---|---|", *claims, "",
        "## Class matrices (seed 0): each class's two most related classes", "",
        "| class | " + " | ".join(related) + " |", "|---" * (len(related) + 1) + "|",
        *[f"| {n} | " + " | ".join(", ".join(f"{o} {v:.3f}" for o, v in d[n])
                                    for d in related.values()) + " |" for n in names],
        "", "![matrices](fashion_mnist/matrices.png)", "",
        "## Class-centre distances of penultimate features (seed 0, training images)", "",
        "Off-diagonal spread of the L1-normalised cosine distances (std / mean; 0 = all classes "
        "equidistant): " + ", ".join(f"{k} {v:.3f}" for k, v in spread.items()) + ".", "",
        "![distances](fashion_mnist/distances.png)", "",
        "![projection](fashion_mnist/projection.png)", "",
        "## Distillation study (seed 0): the same CNN trained on each teacher's probabilities "
        "(beta = 1, T = 1)", "",
        "| teacher | student acc | NLL | ECE | cwECE | teacher smoothness gamma |",
        "|---|---|---|---|---|---|",
        *[f"| {name} | {r['accuracy']:.4f} | {r['nll']:.4f} | {r['ece']:.4f} | "
          f"{r['classwise_ece']:.4f} | "
          + (f"{r['smoothness']:.3f} |" if "smoothness" in r else "- |")
          for name, r in distill.items()],
        f"| (no teacher: {TEACHER.label} itself) | {raw['accuracy']:.4f} | {raw['nll']:.4f} | "
        f"{raw['ece']:.4f} | {raw['classwise_ece']:.4f} | - |",
    ]


def main(argv=None):
    args = parse_args(argv)
    figures = os.path.join(args.output, "fashion_mnist")
    os.makedirs(figures, exist_ok=True)
    started = time.perf_counter()
    print(f"keras {keras.__version__}, tensorflow {tf.__version__}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs", flush=True)
    per_seed = []
    for seed in range(args.seeds):
        data, teacher, trained, rows = run_seed(seed, args, keep_models=seed == 0)
        per_seed.append(rows)
        if seed == 0:
            first = (data, trained)
    rows = mean_rows(per_seed)
    data, trained = first
    related = matrix_analysis(trained, data, figures)
    spread = feature_analysis(trained, data, figures)
    distill = distillation(trained, data, args)
    claims = metric_claims(rows) + structure_claims(rows, spread, distill)
    minutes = (time.perf_counter() - started) / 60
    text = "\n".join(report_lines(args, data, trained, rows,
                                  (related, spread, distill, claims), minutes)) + "\n"
    path = os.path.join(args.output, "fashion_mnist_study.md")
    with open(path, "w") as f:
        f.write(text)
    print(text)
    print(f"wrote {path} and figures in {figures}")


if __name__ == "__main__":
    main()
