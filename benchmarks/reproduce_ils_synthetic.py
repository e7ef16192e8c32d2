"""Reproduce the ILS paper's synthetic experiment (Tables V and VI) with keras_smooth.

Runs `keras_smooth.workflows.run_comparison` on the 3-class synthetic task
(50/50/5000 points per class, MLP 5 x 64 ReLU, model selection by validation
cross-entropy) for R replicates under compare's default training on this task,
which is the paper's own protocol (appendix A-B; `keras_smooth.training.
protocol_for("gaussian")`: Adam 1e-2, at most 500 epochs, early stopping after
10 epochs without a lower validation loss, best-validation weights). Then, on
the same replicates, Table VI: students of the same architecture distilled at
T = 1 (`dis`, beta = 1) with the same protocol from the Bayes-optimal model and
from the selected No LS, LS and ILS models. Prints mean ± standard error next
to the paper's tables (100 replicates) and, for every pair of rows the paper
orders, the mean paired difference across replicates with its standard error.

Besides our classwise ECE (Kull et al., the ILS paper's Eq. 2) it prints the
authors' per-true-class top-label variant, which is what the paper's cwECE
column measured; the paper's orderings are tested on that variant.

    python benchmarks/reproduce_ils_synthetic.py [--replicates 20] [--grid synthetic]
        [--reduce ils-36] [--batch-size 32|full] [--report-only]

Resumable, replicate by replicate: results go to --output (default
runs/reproduce_ils_synthetic): results.json of `compare` and distillation.json.
`--report-only` prints the tables of the replicates finished so far.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from keras_smooth import _io, calibration, datasets, methods  # noqa: E402
from keras_smooth.methods import Method  # noqa: E402
from keras_smooth.models import default_model  # noqa: E402
from keras_smooth.training import Teacher, protocol_for  # noqa: E402
from keras_smooth.workflows import run_comparison  # noqa: E402
from keras_smooth.workflows.methods import train_method  # noqa: E402

# ILS paper Table V (100 replicates): accuracy, acc dense, acc sparse, cross-entropy, ECE,
# cwECE (the authors' per-true-class variant). Labels are ours ("Standard LS" is "LS").
TABLE_V = {
    "Bayes-optimal": (0.8198, 0.8294, 0.7814, 0.4444, 0.0067, 0.0234),
    "No LS": (0.7845, 0.8143, 0.6654, 0.5589, 0.0426, 0.0668),
    "No LS + TempS": (0.7845, 0.8143, 0.6654, 0.5446, 0.0311, 0.0632),
    "LS": (0.7944, 0.8117, 0.7251, 0.5318, 0.0293, 0.0723),
    "LS + TempS": (0.7948, 0.8124, 0.7244, 0.5238, 0.0263, 0.0701),
    "LS-0.2": (0.7939, 0.8111, 0.7253, 0.5439, 0.0650, 0.0785),
    "LS-0.2 + TempS": (0.7939, 0.8111, 0.7253, 0.5301, 0.0241, 0.0707),
    "ILS1": (0.8018, 0.8149, 0.7493, 0.5041, 0.0235, 0.0495),
    "ILS1 + TempS": (0.8016, 0.8148, 0.7488, 0.5052, 0.0268, 0.0497),
    "ILS2": (0.7956, 0.8150, 0.7337, 0.5232, 0.0287, 0.0496),
    "ILS2 + TempS": (0.7958, 0.8154, 0.7302, 0.5201, 0.0259, 0.0494),
    "ILS": (0.8013, 0.8142, 0.7497, 0.5089, 0.0269, 0.0449),
    "ILS + TempS": (0.8014, 0.8145, 0.7491, 0.5087, 0.0278, 0.0446),
}
# ILS paper Table VI: the student's accuracy, cross-entropy, ECE, cwECE by its teacher.
TABLE_VI = {
    "Bayes-optimal": (0.8192, 0.4451, 0.0137, 0.0338),
    "No LS": (0.7847, 0.5592, 0.0405, 0.0649),
    "LS": (0.7843, 0.5621, 0.0408, 0.0726),
    "ILS": (0.7957, 0.5201, 0.0473, 0.0661),
}
METRICS = ("accuracy", "nll", "ece", "authors")  # the columns both tables share with us
METRIC_TITLES = {"accuracy": "accuracy", "nll": "cross-entropy", "ece": "ECE",
                 "authors": "cwECE (authors)", "classwise_ece": "cwECE (Kull)"}
# Pairs of Table V rows the paper orders (§III, appendix A): ILS1 < LS < No LS in
# cross-entropy; the ILS family ahead of No LS and LS in every metric; LS ahead of No LS
# except in cwECE; temperature scaling helping No LS.
TABLE_V_PAIRS = (("ILS1", "LS"), ("LS", "No LS"), ("ILS2", "LS"), ("ILS", "LS"),
                 ("ILS1", "No LS"), ("ILS2", "No LS"), ("ILS", "No LS"),
                 ("LS + TempS", "No LS + TempS"), ("No LS + TempS", "No LS"))
TABLE_VI_PAIRS = (("No LS", "LS"), ("ILS", "No LS"), ("ILS", "LS"))
TEACHERS = ("Bayes-optimal", "No LS", "LS", "ILS")  # Table VI; ours by base method name
TEACHER_METHOD = {"No LS": "no_ls", "LS": "ls", "ILS": "ils"}
# Reductions of the synthetic grids when the full ones do not fit the time (named on the
# command line and in the output): "ils-36" keeps 36 of ILS's 120 settings (P1 0.75, 0.8,
# 0.85; P2 1, 1.5, 2; all four teacher temperatures), every other grid whole.
REDUCTIONS = {"none": {},
              "ils-36": {"ils": {"p1": (0.75, 0.8, 0.85), "p2": (1.0, 1.5, 2.0)}}}


def _ls_loss(params, num_classes):
    from keras_smooth import losses

    return losses.LabelSmoothingLoss(params["epsilon"], num_classes=num_classes)


LS02 = Method("ls_0.2", "LS-0.2", params={"epsilon": (0.2,)}, loss=_ls_loss,
              description="uniform LS at eps = 0.2 (the paper's 'Standard LS-0.2' row)")
EXTRA_ROWS = (LS02,
              Method("ls_0.2_temps", "LS-0.2 + TempS", temperature_of="ls_0.2"),
              Method("ils1_temps", "ILS1 + TempS", temperature_of="ils1"),
              Method("ils2_temps", "ILS2 + TempS", temperature_of="ils2"))


def _reduced(method, grid, values):
    """`method` with some hyperparameters of `grid` replaced by `values` (same hooks)."""
    params = {**method.grid(grid), **values}
    return Method(f"{method.name}_reduced", method.label, params=params, loss=method.loss,
                  targets=method.targets, needs_teacher=method.needs_teacher,
                  same_loss=method.same_loss, domains=method.domains,
                  log_scale=method.log_scale, description=f"{method.description} (reduced grid)")


def table_v_methods(grid, reduce="none"):
    """The Table V rows: registered methods of the default group with a row, and the extras."""
    chosen = [methods.get(n) for n in methods.names("default")
              if methods.get(n).label in TABLE_V]
    reduced = {name: _reduced(methods.get(name), grid, values)
               for name, values in REDUCTIONS[reduce].items()}
    out = []
    for method in chosen:
        if method.name in reduced:
            method = reduced[method.name]
        elif method.temperature_of in reduced:
            base = reduced[method.temperature_of].name
            method = Method(f"{base}_temps", method.label, temperature_of=base)
        out.append(method)
    return out + list(EXTRA_ROWS)


def paired_difference(first, second):
    """Mean, standard error and count of `first - second` over paired replicates.

    Returns `(mean, standard error, n)`; the error is `std(ddof=1) / sqrt(n)`,
    NaN for one pair.
    """
    first, second = np.asarray(first, "float64"), np.asarray(second, "float64")
    if first.shape != second.shape or first.ndim != 1 or len(first) == 0:
        raise ValueError(f"paired values must be two equal-length 1-D sequences, got shapes "
                         f"{first.shape} and {second.shape}")
    diff = first - second
    se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
    return float(diff.mean()), float(se), len(diff)


def verdict(paper_difference, mean, se):
    """Whether our paired difference agrees in sign with the paper's at two standard errors.

    "holds": same sign and |mean| > 2 se; "reversed": the opposite sign and
    |mean| > 2 se; "not resolved": within 2 se of zero (or the paper's rows tie).
    """
    if paper_difference == 0 or not np.isfinite(se) or abs(mean) <= 2 * se:
        return "not resolved"
    return "holds" if np.sign(mean) == np.sign(paper_difference) else "reversed"


def authors_cwece(labels, logits, temperature=1.0):
    """The authors' cwECE variant of logits at a temperature."""
    probs = calibration.apply_temperature(logits, temperature)
    return calibration.true_class_subset_ece(labels, probs)


def _predictions(output, base, replicate):
    with np.load(os.path.join(output, "predictions", f"{base}-{replicate}.npz")) as stored:
        return {k: stored[k] for k in stored.files}


def _distil_one(data, teacher_logits, seed, protocol):
    """Test metrics of a student distilled at T = 1 from `teacher_logits` on x_train."""
    teacher = Teacher({"train": np.asarray(teacher_logits, "float32")}, 1.0, 0, float("nan"), "")
    started = time.perf_counter()
    result = train_method("dis", data, teacher, default_model, grid="quick", seed=seed,
                          **protocol.fit_arguments())
    metrics = calibration.evaluate(data.y_test, result["test_logits"], groups=data.test_groups)
    metrics["authors"] = authors_cwece(data.y_test, result["test_logits"])
    metrics.update(best_epoch=result["best_epoch"], seconds=time.perf_counter() - started)
    return metrics


def distil(args, replicate, protocol, store):
    """Table VI students of one replicate (stored in `store`, a dict saved after each)."""
    seed = args.seed + replicate
    data = datasets.load("gaussian", seed=seed)
    for teacher in TEACHERS:
        key = f"{teacher}|{replicate}"
        if key in store:
            continue
        if teacher == "Bayes-optimal":
            logits = np.log(np.maximum(datasets.gaussian_task_posterior(data.x_train), 1e-300))
        else:
            base = _base_name(args, TEACHER_METHOD[teacher])
            logits = _predictions(args.output, base, replicate)["train_logits"]
        store[key] = _distil_one(data, logits, seed, protocol)
        _io.write_json(os.path.join(args.output, "distillation.json"), store)


def _base_name(args, name):
    reduced = REDUCTIONS[args.reduce]
    return f"{name}_reduced" if name in reduced else name


def _load_json(path, default):
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return json.load(f)


def complete_replicates(records, store, chosen):
    """The replicates with every Table V row and every Table VI student finished."""
    names = {m.name for m in chosen}
    done = []
    for r in sorted({rec["replicate"] for rec in records}):
        have = {rec["method"] for rec in records if rec["replicate"] == r}
        if names <= have and all(f"{t}|{r}" in store for t in TEACHERS):
            done.append(r)
    return done


def table_v_values(args, records, chosen, replicates):
    """`{label: {metric: per-replicate values}}` of Table V, with the Bayes-optimal row."""
    values = {}
    for method in chosen:
        mine = sorted((r for r in records if r["method"] == method.name
                       and r["replicate"] in replicates), key=lambda r: r["replicate"])
        row = {k: [r[k] for r in mine] for k in ("accuracy", "accuracy_dense",
                                                 "accuracy_sparse", "nll", "ece",
                                                 "classwise_ece", "temperature",
                                                 "best_epoch")}
        row["authors"] = []
        for r in mine:
            data = datasets.load("gaussian", seed=r["seed"])
            logits = _predictions(args.output, r["base"], r["replicate"])["test_logits"]
            row["authors"].append(authors_cwece(data.y_test, logits, r["temperature"]))
        values[method.label] = row
    bayes = {}
    for r in replicates:
        data = datasets.load("gaussian", seed=args.seed + r)
        rec = next(x for x in records if x["replicate"] == r)["bayes"]
        rec = dict(rec, temperature=1.0, best_epoch=float("nan"), authors=calibration.true_class_subset_ece(
            data.y_test, data.extras["bayes_test"]))
        for k, v in rec.items():
            bayes.setdefault(k, []).append(v)
    values["Bayes-optimal"] = bayes
    return values


def _cell(values):
    values = np.asarray(values, "float64")
    se = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return f"{values.mean():.4f}±{se:.4f}"


def print_table(title, values, paper, keys, rows):
    """Ours (mean ± s.e.) next to the paper's value, one line per row."""
    print(title)
    header = f"{'row':16s}" + "".join(f" {METRIC_TITLES.get(k, k)[:15]:>15s} {'paper':>6s}"
                                      for k in keys)
    print(header)
    print("-" * len(header))
    for label in rows:
        if label not in values:
            continue
        cells = []
        for i, key in enumerate(keys):
            ref = paper.get(label)
            cells.append(f" {_cell(values[label][key]):>15s} "
                         f"{'-' if ref is None else format(ref[i], '.4f'):>6s}")
        print(f"{label:16s}" + "".join(cells))
    print()


def print_pairs(title, values, paper, pairs, keys, paper_keys):
    """Mean paired difference (first - second) ± s.e., the paper's difference, the verdict."""
    print(title)
    print(f"  {'first - second':32s} {'metric':16s} {'ours (paired)':>17s} {'paper':>8s}  "
          "at 2 s.e.")
    for first, second in pairs:
        if first not in values or second not in values:
            continue
        for key in keys:
            mean, se, _ = paired_difference(values[first][key], values[second][key])
            ref = paper[first][paper_keys.index(key)] - paper[second][paper_keys.index(key)]
            print(f"  {first + ' - ' + second:32s} {METRIC_TITLES[key]:16s} "
                  f"{mean:+9.4f}±{se:.4f} {ref:+8.4f}  {verdict(ref, mean, se)}")
    print()


def print_hyperparameters(records, chosen, replicates):
    """The mean of each chosen hyperparameter per method (the paper's right-hand columns)."""
    print("Chosen hyperparameters, mean over replicates")
    for method in chosen:
        mine = [r["hyperparameters"] for r in records
                if r["method"] == method.name and r["replicate"] in replicates]
        names = sorted({k for h in mine for k in h})
        if names:
            print(f"  {method.label:16s} " + ", ".join(
                f"{k} {np.mean([h[k] for h in mine]):.3f}" for k in names))
    print()


def report(args, chosen):
    """Print both tables and the paired tests for the finished replicates."""
    stored = _load_json(os.path.join(args.output, "results.json"), {"records": []})
    store = _load_json(os.path.join(args.output, "distillation.json"), {})
    replicates = complete_replicates(stored["records"], store, chosen)
    if not replicates:
        print("no replicate is finished yet")
        return
    print(f"ILS synthetic task: {len(replicates)} replicates (seeds "
          f"{[args.seed + r for r in replicates][0]}..{args.seed + replicates[-1]}), grid "
          f"'{args.grid}', reduction '{args.reduce}'; training: {stored['settings']['training']}")
    print("ours: mean ± standard error over replicates; paper: 100 replicates\n")
    table5 = table_v_values(args, stored["records"], chosen, replicates)
    labels = ["Bayes-optimal"] + [m.label for m in chosen]
    keys5 = ("accuracy", "accuracy_dense", "accuracy_sparse", "nll", "ece", "authors")
    print_table("Table V", table5, TABLE_V, keys5, labels)
    print_table("Table V, more", table5, {}, ("classwise_ece", "temperature", "best_epoch"),
                labels)
    print_hyperparameters(stored["records"], chosen, replicates)
    table6 = {t: {k: [store[f"{t}|{r}"][k] for r in replicates]
                  for k in ("accuracy", "nll", "ece", "authors", "classwise_ece", "best_epoch")}
              for t in TEACHERS}
    print_table("Table VI (student distilled at T = 1 from the teacher of the row)", table6,
                TABLE_VI, METRICS, TEACHERS)
    print_table("Table VI, more", table6, {}, ("classwise_ece", "best_epoch"), TEACHERS)
    print_pairs("Table V: paired differences (first - second) of the orderings the paper claims",
                table5, TABLE_V, TABLE_V_PAIRS, ("nll", "ece", "authors", "accuracy"), keys5)
    print_pairs("Table VI: paired differences of the students (first - second teacher)",
                table6, TABLE_VI, TABLE_VI_PAIRS, METRICS, METRICS)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=20)
    parser.add_argument("--grid", default="synthetic", choices=methods.GRID_NAMES)
    parser.add_argument("--reduce", default="none", choices=sorted(REDUCTIONS),
                        help="ils-36: ILS's P1 in {0.75, 0.8, 0.85} and P2 in {1, 1.5, 2} (36 of "
                             "its 120 settings); default none (the full grids)")
    parser.add_argument("--batch-size", default=None,
                        help="replace the protocol's batch size (an integer or 'full')")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--output", default=os.path.join("runs", "reproduce_ils_synthetic"))
    parser.add_argument("--report-only", action="store_true",
                        help="print the tables of the finished replicates; train nothing")
    args = parser.parse_args(argv)
    chosen = table_v_methods(args.grid, args.reduce)
    batch = args.batch_size
    protocol = protocol_for("gaussian").replace(
        batch_size=None if batch is None else (batch if batch == "full" else int(batch)))
    if not args.report_only:
        store = _load_json(os.path.join(args.output, "distillation.json"), {})
        for replicate in range(args.replicates):
            started = time.perf_counter()
            run_comparison(dataset="gaussian", methods=chosen, replicates=replicate + 1,
                           seed=args.seed, grid=args.grid, output=args.output,
                           protocol=protocol)
            distil(args, replicate, protocol, store)
            print(f"replicate {replicate} done in {time.perf_counter() - started:.0f} s "
                  f"({time.strftime('%H:%M:%S')})", flush=True)
    report(args, chosen)


if __name__ == "__main__":
    main()
