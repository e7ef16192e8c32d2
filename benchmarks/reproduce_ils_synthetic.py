"""Reproduce the ILS paper's synthetic experiment (Table V) with keras_smooth.

Runs `keras_smooth.workflows.run_comparison` on the 3-class synthetic task
(50/50/5000 points per class, MLP 5 x 64 ReLU, model selection by validation
cross-entropy) for R replicates, then prints mean ± standard error next to
the paper's Table V (100 replicates). Besides our classwise ECE (Kull et al.,
the ILS paper's Eq. 2) it prints the authors' per-true-class top-label
variant, which is what the paper's cwECE column measured. The methods are
those of the registry's "default" group that have a row in Table V (matched by
label, `keras_smooth.workflows.report.ILS_TABLE_V`), or `--methods`.

    python benchmarks/reproduce_ils_synthetic.py [--replicates 20]
        [--grid synthetic-small|synthetic|small] [--epochs 60] [--methods no_ls,my_mod:mine]

Resumable: results go to --output (default runs/reproduce_ils_synthetic).
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from keras_smooth import calibration, datasets, methods  # noqa: E402
from keras_smooth.workflows import run_comparison  # noqa: E402
from keras_smooth.workflows.report import ILS_TABLE_V, mean_and_standard_error  # noqa: E402

# The orderings the paper claims, by its method names (our labels): (smaller..., metric).
ORDERINGS = ((("ILS1", "LS", "No LS"), "nll", "test cross-entropy"),
             (("ILS2", "LS"), "cw", "cwECE (Kull)"),
             (("ILS2", "LS"), "authors", "cwECE (authors' variant)"))


def table_v_methods():
    """The "default" group's methods that have a row in the paper's Table V."""
    return [methods.get(n) for n in methods.names("default")
            if methods.get(n).label in ILS_TABLE_V]


def authors_cwece(output, record, seed):
    """The per-true-class variant, from the stored test logits of a record."""
    path = os.path.join(output, "predictions", f"{record['base']}-{record['replicate']}.npz")
    with np.load(path) as stored:
        probs = calibration.apply_temperature(stored["test_logits"], record["temperature"])
    data = datasets.load("gaussian", seed=seed + record["replicate"])
    return calibration.true_class_subset_ece(data.y_test, probs)


def _cells(stats, paper):
    """`mean±se paper` cells of accuracy, cross-entropy, ECE, then the two cwECEs."""
    text = lambda i: f"{'-':>7s}" if paper is None else f"{paper[i]:7.4f}"  # noqa: E731
    (acc, nll, ece, cw), authors = stats[:4], stats[4]
    authors = f"{authors[0]:8.4f}±{authors[1]:.4f}" if authors else f"{'':>17s}"
    return (f"{acc[0]:8.4f}±{acc[1]:.4f} {text(0)} {nll[0]:8.4f}±{nll[1]:.4f} {text(1)} "
            f"{ece[0]:8.4f}±{ece[1]:.4f} {text(2)} {cw[0]:8.4f}±{cw[1]:.4f} {authors} {text(3)}")


def print_table(records, chosen, args):
    """Print ours next to Table V; return `{label: {"nll", "cw", "authors"}}` means."""
    header = (f"{'method':15s} {'accuracy':>17s} {'paper':>7s} {'cross-entropy':>17s} "
              f"{'paper':>7s} {'ECE':>17s} {'paper':>7s} {'cwECE (Kull)':>17s} "
              f"{'cwECE (authors)':>17s} {'paper':>7s}")
    print(header)
    print("-" * len(header))
    keys = ("accuracy", "nll", "ece", "classwise_ece")
    bayes = {r["replicate"]: r["bayes"] for r in records}
    stats = [mean_and_standard_error([b[k] for b in bayes.values()]) for k in keys] + [None]
    print(f"{'Bayes-optimal':15s} {_cells(stats, ILS_TABLE_V['Bayes-optimal'])}")
    rows = {}
    for method in chosen:
        mine = [r for r in records if r["method"] == method.name]
        authors = mean_and_standard_error([authors_cwece(args.output, r, args.seed)
                                           for r in mine])
        stats = [mean_and_standard_error([r[k] for r in mine]) for k in keys] + [authors]
        rows[method.label] = {"nll": stats[1][0], "cw": stats[3][0], "authors": authors[0]}
        print(f"{method.label:15s} {_cells(stats, ILS_TABLE_V.get(method.label))}")
    return rows


def print_orderings(rows):
    """The paper's orderings, where every method of one was run."""
    print()
    print("orderings claimed by the paper:")
    for labels, key, title in ORDERINGS:
        if all(label in rows for label in labels):
            values = [rows[label][key] for label in labels]
            holds = all(a < b for a, b in zip(values, values[1:]))
            print(f"  {title} {' < '.join(labels)}: "
                  f"{' < '.join(f'{v:.4f}' for v in values)} -> {holds}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=20)
    parser.add_argument("--grid", default="synthetic-small", choices=methods.GRID_NAMES)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--methods", default=None,
                        help="methods, groups or module:attribute (default: the Table V rows)")
    parser.add_argument("--output", default=os.path.join("runs", "reproduce_ils_synthetic"))
    args = parser.parse_args(argv)
    chosen = methods.parse(args.methods) if args.methods else table_v_methods()

    records = run_comparison(dataset="gaussian", methods=chosen, replicates=args.replicates,
                             seed=args.seed, epochs=args.epochs, grid=args.grid,
                             output=args.output)
    records = [r for r in records if r["replicate"] < args.replicates]
    n = len({r["replicate"] for r in records})
    print(f"ILS synthetic task, {n} replicates (seeds {args.seed}..{args.seed + n - 1}), grid "
          f"'{args.grid}', {args.epochs} epochs; ours: mean ± s.e.; paper: Table V (100 "
          "replicates)")
    print_orderings(print_table(records, chosen, args))


if __name__ == "__main__":
    main()
