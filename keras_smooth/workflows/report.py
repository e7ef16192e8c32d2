"""Summaries of a comparison's records: statistics, a text table, a CSV file and plots.

Everything here reads the records `run_comparison` returns and the methods'
`keras_smooth.methods.Method` objects; no method is known by name. A "+ TempS"
method is one with `temperature_of`; the ILS smoothing curve is drawn for
methods with both `p1` and `p2` hyperparameters; a learned or fixed class
matrix is drawn for every record that carries one. Nothing here prints.
"""

import csv
import json
import os
import warnings
from collections import Counter

import numpy as np

from keras_smooth import methods as registry

COLUMNS = [("accuracy", "accuracy", max), ("nll", "NLL", min), ("ece", "ECE", min),
           ("classwise_ece", "cwECE", min), ("brier", "Brier", min)]
"""(record key, column title, which value is best) of every table."""
SYNTHETIC_COLUMNS = [("accuracy_dense", "acc dense", max),
                     ("accuracy_sparse", "acc sparse", max)]
"""Extra columns when the records have them (the ILS synthetic task)."""

ILS_TABLE_V = {
    "Bayes-optimal": (0.8198, 0.4444, 0.0067, 0.0234),
    "No LS": (0.7845, 0.5589, 0.0426, 0.0668),
    "No LS + TempS": (0.7845, 0.5446, 0.0311, 0.0632),
    "LS": (0.7944, 0.5318, 0.0293, 0.0723),
    "LS + TempS": (0.7948, 0.5238, 0.0263, 0.0701),
    "ILS1": (0.8018, 0.5041, 0.0235, 0.0495),
    "ILS2": (0.7956, 0.5232, 0.0287, 0.0496),
    "ILS": (0.8013, 0.5089, 0.0269, 0.0449),
    "ILS + TempS": (0.8014, 0.5087, 0.0278, 0.0446),
}
"""ILS paper Table V (synthetic task, mean of 100 replicates): accuracy,
cross-entropy, ECE and cwECE (the authors' per-true-class variant), by row
("Standard LS" is our "LS"; "+ TempS" is the paper's "Temp Scaling: Yes")."""

_SHORT = {"epsilon": "eps", "temperature": "T", "alpha": "alpha", "p1": "P1", "p2": "P2"}


def _methods(methods):
    """`methods` (Methods, registered names or module:attribute) as Methods."""
    return [registry.resolve(m) for m in methods]


def _format_params(records, rescales):
    """The most often chosen setting of a method's records, e.g. "eps=0.1 (2/3)"."""
    settings = Counter(json.dumps(r["hyperparameters"], sort_keys=True) for r in records)
    best, count = settings.most_common(1)[0]
    params = json.loads(best)
    params.pop("teacher_temperature_fitted", None)  # in records of earlier versions
    text = ", ".join(f"{_SHORT.get(k, k)}={v:g}" for k, v in params.items()) or "-"
    if rescales:
        text += f"; TempS T={np.mean([r['temperature'] for r in records]):.2f}"
    return text + (f" ({count}/{len(records)})" if len(records) > 1 else "")


def mean_and_standard_error(values):
    """(mean, standard error of the mean) of `values`; the error is NaN for one value."""
    values = np.asarray(values, dtype="float64")
    se = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return values.mean(), se


def summarise(records, methods):
    """Per method: mean and standard error of each column, and the chosen hyperparameters.

    Args:
        records: records of `run_comparison`.
        methods: the methods to summarise, in table order (`Method` objects,
            registered names or `module:attribute`).

    Returns:
        list of rows `{"method", "label", "n", "params", column: (mean, se)}`
        for the methods that have records.
    """
    rows = []
    for method in _methods(methods):
        mine = [r for r in records if r["method"] == method.name]
        if not mine:
            continue
        row = {"method": method.name, "label": mine[0]["label"], "n": len(mine),
               "params": _format_params(mine, method.temperature_of is not None)}
        for key, _, _ in COLUMNS + SYNTHETIC_COLUMNS:
            values = [r[key] for r in mine if key in r]
            if values:
                row[key] = mean_and_standard_error(values)
        rows.append(row)
    return rows


def _cells(row, columns, best):
    cells = []
    for key, _, _ in columns:
        mean, se = row[key]
        mark = "*" if np.isclose(mean, best[key]) else " "
        cells.append(f"{mean:.4f}±{se:.4f}{mark}" if np.isfinite(se) else f"{mean:.4f}{mark}")
    return cells


def _column_groups(columns, cell_width, first, width):
    """`columns` split into runs that fit `width` next to a `first`-wide method column."""
    per_table = max(1, (width - first) // cell_width)
    return [columns[i:i + per_table] for i in range(0, len(columns), per_table)]


def _fitted_table(rows, records, columns, best, title, width):
    """`format_table` fitted to `width` columns: metric tables, then the hyperparameters."""
    import textwrap

    cells = {row["label"]: dict(zip([c[0] for c in columns], _cells(row, columns, best)))
             for row in rows}
    bayes = {r["replicate"]: r["bayes"] for r in records if "bayes" in r}
    labels = [row["label"] for row in rows] + (["Bayes-optimal"] if bayes else [])
    first = max(len(label) for label in labels) + 1
    cell_width = max([len(c) for row in cells.values() for c in row.values()]
                     + [len(t) for _, t, _ in columns]) + 2
    lines = textwrap.wrap(title, width)
    for group in _column_groups(columns, cell_width, first, width):
        header = f"{'method':{first}s}" + "".join(f"{t:>{cell_width}s}" for _, t, _ in group)
        lines += ["", header, "-" * len(header)]
        for row in rows:
            lines.append(f"{row['label']:{first}s}"
                         + "".join(f"{cells[row['label']][k]:>{cell_width}s}" for k, _, _ in group))
        if bayes:
            means = [f"{np.mean([b[k] for b in bayes.values()]):.4f} " for k, _, _ in group]
            lines.append(f"{'Bayes-optimal':{first}s}" + "".join(f"{m:>{cell_width}s}"
                                                                 for m in means))
    lines += ["", "hyperparameters (chosen; how often over the replicates):"]
    for row in rows:
        lines += textwrap.wrap(f"{row['label']}: {row['params']}", width, initial_indent="  ",
                               subsequent_indent="    ")
    if bayes:
        paper = ILS_TABLE_V["Bayes-optimal"]
        lines += textwrap.wrap(f"Bayes-optimal: the exact posterior; ILS paper Table V: acc "
                               f"{paper[0]:.4f}, CE {paper[1]:.4f}", width)
    return "\n".join(lines)


def _bayes_row(records, columns):
    """The Bayes-optimal line of a table (one per replicate averaged), or None."""
    bayes = {r["replicate"]: r["bayes"] for r in records if "bayes" in r}
    if not bayes:
        return None
    paper = ILS_TABLE_V["Bayes-optimal"]
    cells = [f"{np.mean([b[key] for b in bayes.values()]):15.4f} " for key, _, _ in columns]
    return (f"{'Bayes-optimal':16s}" + "".join(f"{c:>17s}" for c in cells)
            + f"  (exact posterior; ILS paper Table V: acc {paper[0]:.4f}, CE {paper[1]:.4f})")


def format_table(rows, records, dataset, width=None):
    """The text table of `summarise`'s rows, with a Bayes-optimal line when known.

    Args:
        rows: `summarise`'s rows.
        records: the records (for the Bayes-optimal line of the synthetic task).
        dataset: the data set's name, for the title.
        width: None (default) for one line per method with every column and
            the chosen hyperparameters (`keras-smooth compare --wide`); a
            number of columns to fit instead: the metric columns are split
            into as many tables as needed (each repeating the method column),
            and the hyperparameters follow as a list wrapped to `width`.
    """
    columns = COLUMNS + ([c for c in SYNTHETIC_COLUMNS if rows and c[0] in rows[0]])
    best = {key: pick(row[key][0] for row in rows if key in row) for key, _, pick in columns}
    n = max(row["n"] for row in rows)
    title = (f"{dataset}: test metrics, mean ± standard error over {n} replicate(s); "
             "* marks the best in a column")
    if width is not None:
        return _fitted_table(rows, records, columns, best, title, width)
    lines = [title]
    header = (f"{'method':16s}" + "".join(f"{title:>17s}" for _, title, _ in columns)
              + "  hyperparameters (chosen)")
    lines += [header, "-" * len(header)]
    for row in rows:
        cells = []
        for key, _, _ in columns:
            mean, se = row[key]
            mark = "*" if np.isclose(mean, best[key]) else " "
            cells.append(f"{mean:8.4f}±{se:.4f}{mark}" if np.isfinite(se)
                         else f"{mean:15.4f}{mark}")
        lines.append(f"{row['label']:16s}" + "".join(f"{c:>17s}" for c in cells) + "  "
                     + row["params"])
    bayes = _bayes_row(records, columns)
    if bayes:
        lines.append(bayes)
    return "\n".join(lines)


CSV_KEYS = ["method", "label", "replicate", "seed", "dataset", "accuracy", "nll", "ece",
            "classwise_ece", "brier", "accuracy_dense", "accuracy_sparse", "temperature",
            "teacher_temperature", "val_nll", "best_epoch", "students_trained", "seconds",
            "hyperparameters"]


def write_csv(records, path):
    """One row per record (columns `CSV_KEYS`), written atomically."""
    from keras_smooth import _io

    with _io.atomic_open(path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_KEYS, extrasaction="ignore")
        writer.writeheader()
        for r in records:
            writer.writerow({**r, "hyperparameters": json.dumps(r["hyperparameters"],
                                                                sort_keys=True)})


def _first_predictions(output, records, methods):
    """Replicate 0's test and plotting-grid probabilities per label, in `methods` order."""
    from keras_smooth import calibration
    from keras_smooth._io import UNREADABLE, describe_error, read_npz

    preds, grid_preds = {}, {}
    for method in methods:
        r = next((r for r in records if r["replicate"] == 0 and r["method"] == method.name),
                 None)
        if r is None:
            continue
        base = method.temperature_of or method.name
        path = os.path.join(output, "predictions", f"{base}-0.npz")
        try:
            stored = read_npz(path)
            test_logits = stored["test_logits"]
        except UNREADABLE as error:  # run_comparison recomputes damaged files; not this one
            warnings.warn(f"{path} is unreadable ({describe_error(error)}); "
                          f"{r['label']} is left out of the plots")
            continue
        preds[r["label"]] = calibration.apply_temperature(test_logits, r["temperature"])
        if "extra_logits" in stored:
            grid_preds[r["label"]] = calibration.apply_temperature(stored["extra_logits"],
                                                                   r["temperature"])
    return preds, grid_preds


def _smoothing_curves(records, methods):
    """`{legend: (P1, P2)}` of every record of a method with both `p1` and `p2`."""
    curved = {m.name for m in methods if {"p1", "p2"} <= set(m.params)}
    return {f"{r['label']} (replicate {r['replicate']})":  # numbered as in results.json
            (r["hyperparameters"]["p1"], r["hyperparameters"]["p2"])
            for r in records if r["method"] in curved and "p1" in r["hyperparameters"]}


def _matrices(records, methods):
    """`{"<label> matrix (mean of n)": mean matrix}` of the methods whose records carry one.

    A "+ TempS" method carries its base's matrix; it is drawn once, with the base.
    """
    matrices = {}
    for method in methods:
        if method.temperature_of is not None:
            continue
        mats = [np.asarray(r["matrix"]) for r in records
                if r["method"] == method.name and "matrix" in r]
        if mats:
            label = next(r["label"] for r in records if r["method"] == method.name)
            matrices[f"{label} matrix (mean of {len(mats)})"] = np.mean(mats, axis=0)
    return matrices


def write_plots(output, records, methods, dataset_name, seed, dataset_options):
    """Reliability diagrams, ILS smoothing curves, class matrices and decision regions.

    Args:
        output: the comparison's output folder (figures are written there).
        records: records of `run_comparison`.
        methods: the methods shown, in order (`Method`s or what `resolve` takes).
        dataset_name, seed, dataset_options: the comparison's data (replicate 0
            is reloaded for its test split).

    Returns:
        the paths of the figures written.
    """
    from keras_smooth import datasets, plots
    from keras_smooth.workflows.compare import decision_grid

    methods = _methods(methods)
    written = []
    save = lambda fig, name: written.append(  # noqa: E731
        plots.save_figure(fig, os.path.join(output, name)))
    data = datasets.load(dataset_name, seed=seed, **dataset_options)  # replicate 0
    preds, grid_preds = _first_predictions(output, records, methods)
    if preds:
        save(plots.reliability_diagrams(preds, data.y_test, title=f"{dataset_name}, replicate 0 "
                                        f"(seed {seed}, test split)"), "reliability.png")
    curves = _smoothing_curves(records, methods)
    if curves:
        save(plots.smoothing_curves(curves), "ils_smoothing_curves.png")
    matrices = _matrices(records, methods)
    if matrices:
        save(plots.matrix_heatmaps(matrices, data.class_names), "matrices.png")
    if grid_preds:
        shown = np.random.default_rng(seed).choice(len(data.y_test), min(600, len(data.y_test)),
                                                   replace=False)
        save(plots.decision_regions(data.x_test[shown], data.y_test[shown], decision_grid(data),
                                    grid_preds, data.class_names), "decision_regions.png")
    return written
