"""`keras-smooth`: compare label-regularization methods on embedded or your data.

    keras-smooth compare                      # the ILS synthetic task, 3 replicates
    keras-smooth compare --quick              # a smoke run of under a minute
    keras-smooth compare --dataset digits --methods no_ls,ls,lls,lspp
    keras-smooth tune --method ils --quick    # a KerasTuner search, exported for TF Serving
    python -m keras_smooth compare ...        # the same

Only what a command needs is imported when it runs: `--help` and a bad option
answer without importing TensorFlow. Printed lines fit the terminal
(`COLUMNS`; 100 when unknown): tables are split and wrapped; `--wide` prints
each table row on one line.
"""

import argparse
import os
import shutil
import sys
import tempfile
import textwrap
import time
import warnings

import numpy as np

HYPERBAND_EPOCHS = 81  # tune --tuner hyperband without --epochs: max_epochs (3^4)
QUICK = {"replicates": 1, "epochs": 15, "grid": "quick"}


GRID_NAMES = ("small", "paper", "synthetic", "synthetic-small", "quick")


# Lines TensorFlow's C++ runtime writes to stderr while it is imported, whatever
# TF_CPP_MIN_LOG_LEVEL says (TF 2.21 logs them through absl before its log
# level is read): absl's notice, oneDNN's banner, the CPU-feature notice and, from the
# GPU-capable `tensorflow` wheel on a machine without CUDA, cudart's notice.
_BANNERS = ("All log messages before absl::InitializeLog() is called",
            "oneDNN custom operations are on",
            "cpu_feature_guard.cc",
            "To enable the following instructions:",
            "Could not find cuda drivers on your machine")  # the GPU-capable wheel on a CPU
_QUIET = {"on": False}


def _quiet_logs():
    """TF_CPP_MIN_LOG_LEVEL=3 unless the user set a level; return whether INFO lines are hidden.

    The banners are INFO lines: they are filtered unless the user's level asks
    for INFO (TF_CPP_MIN_LOG_LEVEL=0).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        level = int(os.environ["TF_CPP_MIN_LOG_LEVEL"])
    except ValueError:
        level = 3
    _QUIET["on"] = level >= 1
    return _QUIET["on"]


def import_framework():
    """Import Keras (and its backend) with TensorFlow's start-up banners kept off stderr.

    The process's stderr (file descriptor 2, where the C++ runtime writes) goes
    to a temporary file during the import; afterwards every line of it except
    the known banners is written back, so a real error still shows. With
    TF_CPP_MIN_LOG_LEVEL=0 set by the user, nothing is filtered. Python's absl
    logging is then left alone too; else it is set to errors only
    (TensorFlow's `WARNING:absl:` notes).
    """
    if "keras" in sys.modules or not _QUIET["on"]:
        import keras  # noqa: F401
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import keras  # noqa: F401

            if keras.backend.backend() == "tensorflow":
                import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines()
                    if line.strip() and not any(banner in line for banner in _BANNERS)]
    if kept:
        print("\n".join(kept), file=sys.stderr, flush=True)
    try:
        from absl import logging as absl_logging
    except ImportError:  # absl comes with TensorFlow; JAX-only installs may lack it
        return
    absl_logging.set_verbosity(absl_logging.ERROR)


def _checked(check):
    """An argparse `type=` from a check raising ValueError/TypeError: argparse's one-line error."""
    def convert(text):
        try:
            return check(text)
        except (ValueError, TypeError) as error:
            raise argparse.ArgumentTypeError(str(error).replace("`", "")) from None
    convert.__name__ = check.__name__
    return convert


_MAX_INT = 2**31 - 1  # counts beyond this overflow the frameworks' 32-bit integers


def _integer(text, minimum, maximum=_MAX_INT, alternative=""):
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"must be an integer >= {minimum}{alternative}, got {text!r}") from None
    if value < minimum:
        raise ValueError(f"must be an integer >= {minimum}{alternative}, got {value}")
    if value > maximum:
        raise ValueError(f"must be an integer in [{minimum}, {maximum}]{alternative}, "
                         f"got {value}")
    return value


def arg_positive_int(text):
    return _integer(text, 1)


def arg_batch_size(text):
    """A batch size: an integer >= 1, or "full" (the whole training split per step)."""
    if text.strip().lower() == "full":
        return "full"
    return _integer(text, 1, alternative=" or 'full'")


def arg_train_limit(text):
    return _integer(text, 20)  # two images per class on average


def arg_seed(text):
    from keras_smooth._arguments import MAX_SEED

    return _integer(text, 0, MAX_SEED)


def arg_seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"must be a number of seconds > 0, got {text!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"must be a finite number of seconds > 0, got {text!r}")
    return value


def arg_methods(text):
    """Comma-separated names, groups and module:attribute -> a tuple of Methods."""
    from keras_smooth import methods

    if ":" in text:  # a user's module may import Keras
        import_framework()
    names = [n.strip() for n in text.split(",")]
    if not any(names):
        raise ValueError(f"names no method, got {text!r}")
    if not all(names):
        raise ValueError(f"has an empty name in {text!r}")
    try:
        return methods.parse(text)
    except (ValueError, TypeError):
        raise
    except Exception as error:  # a user's module that fails while importing
        first = (str(error).strip().splitlines() or [""])[0]
        raise ValueError(f"importing a method of {text!r} failed: "
                         f"{type(error).__name__}: {first}") from None


def _methods_help():
    """`--methods` help and the list of methods shown below the options, from the registry."""
    from keras_smooth import methods

    tags = dict.fromkeys(t for n in methods.names() for t in methods.get(n).tags)
    groups = "; ".join(f"{t} = {','.join(methods.names(t))}" for t in tags)
    help_text = (f"comma-separated methods, groups or module:attribute (your own "
                 f"keras_smooth.methods.Method). Groups: {groups}; all = every group; "
                 "a method named twice, or by a group too, runs once (default: default)")
    lines = ["methods:"]
    for name in methods.names():
        method = methods.get(name)
        text = f"{method.label}: {method.description}" if method.description else method.label
        lines += textwrap.wrap(text, _text_width(), initial_indent=f"  {name:12s} ",
                               subsequent_indent=" " * 15)
    lines.append("  module:attribute  your own Method, imported from the Python path")
    return help_text.replace("%", "%%"), "\n".join(lines)


def arg_dataset(text):
    from keras_smooth.datasets import check_name

    return check_name(text)


def arg_existing_folder(text):
    if not os.path.isdir(text):
        raise ValueError(f"{text} is not a folder" if os.path.exists(text)
                         else f"folder {text} does not exist")
    return text


def arg_output_folder(text):
    from keras_smooth._arguments import folder_problem

    problem = folder_problem(text) if text else "an empty path is not a folder"
    if problem:
        raise ValueError(problem)
    return text


def terminal_width():
    """Columns to fit: `COLUMNS`, else the terminal's width, else 100 (at least 40)."""
    return max(40, shutil.get_terminal_size((100, 24)).columns)


def _text_width():
    """Width of free text in `--help` (argparse's own: the terminal's minus 2, at most 98)."""
    return min(terminal_width() - 2, 98)


def _add(parser, flag, check, default=None, help=None, metavar=None):
    parser.add_argument(flag, type=_checked(check), default=default, help=help, metavar=metavar)


def _common_arguments(parser, *, epochs_help):
    _add(parser, "--dataset", arg_dataset, "gaussian",
         "gaussian (default, the ILS paper's synthetic task), digits, fashion_mnist, "
         "or tfds:NAME (prepared TFDS data: see --tfds-data-dir)")
    _add(parser, "--epochs", arg_positive_int, None, epochs_help)
    _add(parser, "--batch-size", arg_batch_size, None,
         "batch size, or 'full' (default: the data set's training protocol; 32)")
    _add(parser, "--fashion-mnist-dir", arg_existing_folder, None,
         "folder with the Fashion-MNIST IDX files (--dataset fashion_mnist)")
    _add(parser, "--train-limit", arg_train_limit, None,
         "use at most this many training images, >= 20 (--dataset fashion_mnist)")
    _add(parser, "--tfds-data-dir", arg_existing_folder, None,
         "folder with prepared TFDS data (--dataset tfds:NAME); nothing is downloaded")


def _compare_parser(sub):
    methods_help, methods_list = _methods_help()
    compare = sub.add_parser(
        "compare", help="train and compare methods; print tables, write results and plots",
        description=textwrap.fill(
            "Train every method per replicate, select hyperparameters by validation "
            "cross-entropy, and report test accuracy, NLL, ECE and classwise ECE.",
            _text_width()),
        epilog=methods_list, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add(compare, "--methods", arg_methods, "default", methods_help)
    _add(compare, "--replicates", arg_positive_int, None, "replicates (default 3; --quick 1)")
    _add(compare, "--seed", arg_seed, 0, "base seed (default 0); replicate r uses seed + r")
    _common_arguments(compare, epochs_help=(
        "most epochs per model (default: the data set's training protocol: gaussian 500 with "
        "early stopping after 10 epochs, as the ILS paper; else 60; --quick 15)"))
    compare.add_argument("--grid", choices=GRID_NAMES, default=None, metavar="GRID",
                         help=f"hyperparameter grids: {', '.join(GRID_NAMES)} (default small; "
                              "paper = ILS paper appendix C; synthetic = its synthetic-task "
                              "grids)")
    _add(compare, "--output", arg_output_folder, os.path.join("runs", "compare"),
         "folder for results.json, results.csv, plots; re-running resumes (default runs/compare)")
    compare.add_argument("--quick", action="store_true",
                         help="1 replicate, 15 epochs, one grid point per method (explicit options "
                              "win)")
    _output_arguments(compare, "one run per method and replicate: DIR/METHOD/replicate_R")
    return compare


def _output_arguments(parser, runs):
    _add(parser, "--tensorboard", arg_output_folder, None,
         f"write TensorBoard logs to DIR ({runs}): training loss, validation NLL, ECE, "
         "classwise ECE, Brier, accuracy, fitted temperature and the reliability diagram; "
         "view with: tensorboard --logdir DIR", metavar="DIR")
    parser.add_argument("--wide", action="store_true",
                        help="print each table row on one line, however wide (default: fit "
                             "the terminal, COLUMNS or 100)")


def arg_tune_method(text):
    """A registered method with something to tune, or `module:attribute` naming a Method."""
    from keras_smooth import methods

    import_framework()  # KerasTuner imports Keras
    from keras_smooth.tuning.search import resolve_tunable, tunable_methods

    if ":" not in text and text not in methods.names():
        raise ValueError(f"invalid choice: {text!r} (choose from {', '.join(tunable_methods())}; "
                         "or module:attribute naming your own Method)")
    return resolve_tunable(text)


def _tune_methods_help():
    """`name (label: hyperparameters)` of every registered method with something to tune."""
    from keras_smooth import methods

    entries = []
    for name in methods.names():
        method = methods.get(name)
        if method.tunable:
            tuned = [p for p, (low, high) in method.ranges.items() if low < high]
            entries.append(f"{name} ({method.label}: {', '.join(tuned)})")
    return ("method to tune (default ils): " + "; ".join(entries)
            + "; or module:attribute naming your own keras_smooth.methods.Method")


def _tune_parser(sub):
    tune = sub.add_parser(
        "tune", help="KerasTuner search of one method's hyperparameters; export the best model",
        description="Search the hyperparameters of one method with KerasTuner (validation NLL "
                    "against hard labels), then temperature-scale, evaluate and export the best "
                    "model. Chief/worker tuning: set KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP "
                    "and KERASTUNER_ORACLE_PORT and run the same command in every process.")
    tune.add_argument("--method", type=_checked(arg_tune_method), default="ils", metavar="METHOD",
                      help=_tune_methods_help())
    tune.add_argument("--tuner", default="random",
                      choices=("random", "grid", "bayesian", "hyperband"),
                      help="KerasTuner search: random (default), grid (every grid value), "
                           "bayesian (Gaussian-process) or hyperband (successive halving of "
                           "--epochs)")
    _add(tune, "--max-trials", arg_positive_int, None,
         "trials (default 10; --quick 3; grid: whole grid; not for hyperband)")
    tune.add_argument("--strategy", default="auto",
                      choices=("auto", "mirrored", "multiworker", "none"),
                      help="data parallelism per trial: auto = MirroredStrategy over the GPUs "
                           "if any (TensorFlow), DataParallel over several GPUs (JAX); mirrored "
                           "= over every local device (TensorFlow, JAX; refused on torch); "
                           "multiworker is refused: Keras 3 cannot fit under it (use "
                           "chief/worker tuning across machines)")
    _add(tune, "--directory", arg_output_folder, None,
         "search folder; re-running resumes (default runs/tune/METHOD)")
    tune.add_argument("--objective", default="val_nll", choices=("val_nll", "val_ece"),
                      help="validation measure the search minimises: val_nll (default, "
                           "cross-entropy against the hard labels) or val_ece (15-bin ECE)")
    tune.add_argument("--grid", default=None, choices=GRID_NAMES, metavar="GRID",
                      help=f"one of {', '.join(GRID_NAMES)}: search this grid's values instead "
                           "of the method's ranges (the grid tuner's default: synthetic for "
                           "gaussian, else paper)")
    _common_arguments(tune, epochs_help=(
        "most epochs per trial (default: the data set's training protocol: gaussian 500 with "
        "early stopping after 10 epochs, as the ILS paper; else 60; --quick 10; hyperband "
        "without --epochs: 81, the max_epochs its brackets are planned from)"))
    _add(tune, "--seed", arg_seed, 0, "seed of the data split, models and tuner (default 0)")
    _add(tune, "--chief-timeout", arg_seconds, 300.0,
         "seconds a worker waits for the chief oracle (default 300)")
    tune.add_argument("--quick", action="store_true",
                      help="3 trials of 10 epochs (hyperband: max_epochs 10, which it plans "
                           "as about 30 short trials; explicit options win)")
    _output_arguments(tune, "one run per trial: DIR/TRIAL_ID/execution0")
    return tune


def _parser():
    parser = argparse.ArgumentParser(prog="keras-smooth", description=__doc__.splitlines()[0])
    from keras_smooth import __version__

    parser.add_argument("--version", action="version", version=f"keras-smooth {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{compare,tune}",
                                title="commands")
    return parser, {"compare": _compare_parser(sub), "tune": _tune_parser(sub)}


def _replicates(args):
    if args.replicates is not None:
        return args.replicates
    return QUICK["replicates"] if args.quick else 3


def _check_combinations(args, subparser):
    """Options that are valid alone but not together: argparse's error, exit code 2."""
    from keras_smooth._arguments import MAX_SEED

    fashion = args.dataset == "fashion_mnist"
    for flag, value, fits, wanted in (
            ("--fashion-mnist-dir", args.fashion_mnist_dir, fashion, "fashion_mnist"),
            ("--train-limit", args.train_limit, fashion, "fashion_mnist"),
            ("--tfds-data-dir", args.tfds_data_dir, args.dataset.startswith("tfds:"), "tfds:NAME")):
        if value is not None and not fits:
            subparser.error(f"{flag} applies to --dataset {wanted} only, not {args.dataset!r}")
    if args.command == "compare" and args.seed + _replicates(args) - 1 > MAX_SEED:
        subparser.error(f"argument --seed: {args.seed} + {_replicates(args)} replicates exceeds "
                        f"the largest seed {MAX_SEED}")
    if args.command == "tune" and args.tuner == "hyperband" and args.max_trials is not None:
        subparser.error("argument --max-trials: not allowed with --tuner hyperband "
                        "(it picks trials)")


def parse_args(argv=None):
    """Parse and validate the command line; bad input exits with argparse's usage error (2)."""
    parser, subparsers = _parser()
    args = parser.parse_args(argv)
    _check_combinations(args, subparsers[args.command])
    if args.command == "tune" and args.directory is None:
        args.directory = os.path.join("runs", "tune", args.method.name)
        try:
            arg_output_folder(args.directory)
        except ValueError as error:
            subparsers["tune"].error(f"argument --directory: {error}")
    return args


def fit_line(text, width):
    """`text` wrapped to `width` columns (continuation lines indented); as it is if None."""
    if width is None or len(text) <= width:
        return text
    return "\n".join(textwrap.wrap(text, width, subsequent_indent="    ",
                                    break_on_hyphens=False))


class _LiveLine:
    """A status line rewritten in place on a terminal (never wider than the terminal)."""

    def __init__(self, stream, width):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.width = width
        self.last = 0.0

    def status(self, text):
        if self.tty and time.perf_counter() - self.last > 0.2:
            self.last = time.perf_counter()
            limit = (self.width or terminal_width()) - 1
            self.stream.write("\r" + text[:limit].ljust(limit))
            self.stream.flush()

    def line(self, text):
        if self.tty and self.last:
            self.stream.write("\r" + " " * ((self.width or terminal_width()) - 1) + "\r")
            self.last = 0.0
        self.stream.write(fit_line(text, self.width) + "\n")
        self.stream.flush()


class Progress(_LiveLine):
    """One line per finished method; a live status line on a terminal."""

    def __init__(self, stream=None, width=None):
        super().__init__(stream, width)

    def __call__(self, event):
        kind = event["event"]
        if kind == "epoch":
            self.status(f"  replicate {event['replicate'] + 1}/{event['replicates']} · "
                        f"{event['method']} · model {event['student']}/{event['students']} · "
                        f"epoch {event['epoch']}/{event['epochs']}")
        elif kind == "done":
            r = event["record"]
            self.line(f"  {event['replicate'] + 1}/{event['replicates']} {r['label']:14s} "
                      f"acc {r['accuracy']:.4f}  NLL {r['nll']:.4f}  ECE {r['ece']:.4f}  "
                      f"{r['students_trained']} model(s), {r['seconds']:.0f} s")
        elif kind == "skip":
            self.line(f"  replicate {event['replicate'] + 1}/{event['replicates']}: "
                      "already done, kept")


def _dataset_options(args):
    """The loader's keyword arguments from the (already validated) options."""
    options = {}
    if args.fashion_mnist_dir is not None:
        options["directory"] = args.fashion_mnist_dir
    if args.train_limit is not None:
        options["train_limit"] = args.train_limit
    if args.quick and args.dataset == "fashion_mnist" and "train_limit" not in options:
        options["train_limit"] = 3000
    if args.tfds_data_dir is not None:
        options["data_dir"] = os.path.abspath(args.tfds_data_dir)
    return options


def _describe(protocol):
    """One line of a `TrainingProtocol`."""
    stop = ("" if protocol.patience is None
            else f", early stopping after {protocol.patience} epochs without improvement")
    return (f"Adam lr {protocol.learning_rate:g}, batch {protocol.batch_size}, at most "
            f"{protocol.max_epochs} epochs{stop}, best-validation weights")


def compare(args):
    from keras_smooth.training.protocol import protocol_for
    from keras_smooth.workflows import compare as compare_module, report

    methods = args.methods  # validated by the parser (Methods), as every option
    names = [m.name for m in methods]
    replicates = _replicates(args)
    epochs = args.epochs if args.epochs is not None else (QUICK["epochs"] if args.quick else None)
    grid = args.grid if args.grid is not None else (QUICK["grid"] if args.quick else "small")
    options = _dataset_options(args)
    protocol = protocol_for(args.dataset).replace(max_epochs=epochs, batch_size=args.batch_size)
    width = None if args.wide else terminal_width()
    print(fit_line(f"keras-smooth compare: {args.dataset}, methods {', '.join(names)}, "
                   f"{replicates} replicate(s), grid '{grid}', output {args.output}", width)
          + "\n" + fit_line(f"  training: {_describe(protocol)}", width), flush=True)
    started = time.perf_counter()
    records = compare_module.run_comparison(
        dataset=args.dataset, methods=methods, replicates=replicates, seed=args.seed,
        protocol=protocol, grid=grid, output=args.output,
        dataset_options=options, progress=Progress(width=width), tensorboard=args.tensorboard,
    )
    records = [r for r in records if r["method"] in names and r["replicate"] < replicates]
    print()
    print(report.format_table(report.summarise(records, methods), records, args.dataset,
                              width=width))
    report.write_csv(records, os.path.join(args.output, "results.csv"))
    written = report.write_plots(args.output, records, methods, args.dataset, args.seed, options)
    print("\n" + fit_line(f"wrote {os.path.join(args.output, 'results.json')}, results.csv"
                          + "".join(f", {os.path.basename(p)}" for p in written)
                          + f" in {time.perf_counter() - started:.0f} s", width))
    if args.tensorboard:
        print(fit_line(f"TensorBoard: tensorboard --logdir {args.tensorboard}", width))
    return 0


class TuneProgress(_LiveLine):
    """One line per event of `run_search`; a live epoch line on a terminal, as `compare`'s."""

    def __init__(self, stream=None, width=None):
        super().__init__(stream, width)

    @staticmethod
    def _trial_line(event):
        values = ", ".join(f"{k}={v:g}" for k, v in event["values"].items())
        line = f"  trial {event['trial_id']} {event['status'].lower()}: {values}"
        if event["val_nll"] is not None:
            line += f"  val NLL {event['val_nll']:.4f}  val ECE {event['val_ece']:.4f}"
        if "error" in event:
            line += f"\n    {event['error']}"
        return line

    def __call__(self, event):
        kind = event["event"]
        line = None
        if kind == "epoch":
            self.status(f"  trial {event['trial_id']} · epoch {event['epoch']}/{event['epochs']}")
        elif kind == "start":
            how = "resuming the search" if event["resuming"] else "new search"
            line = f"  {event['role']} process, {how}"
        elif kind == "waiting_for_chief":
            line = "  waiting for the chief oracle ..."
        elif kind == "teacher":
            how = ("loaded from the cache" if event["from_cache"]
                   else f"trained in {event['seconds']:.0f} s")
            line = (f"  teacher (no smoothing) {how}: val NLL {event['val_nll']:.4f}, "
                    f"calibration temperature T* = {event['temperature']:.3f}")
        elif kind == "trial_end":
            line = self._trial_line(event)
        if line:
            for part in line.split("\n"):
                self.line(part)


def _print_best(best, rows, objective, width):
    from keras_smooth.tuning import format_trials

    print()
    print(format_trials(rows, objective, width=width))
    values = ", ".join(f"{k}={v:g}" for k, v in best["hyperparameters"].items())
    print("\n" + fit_line(f"best: trial {best['trial_id']} ({values}), val NLL "
                          f"{best['val_nll']:.4f}; model {best['model']}", width))
    scaled = f"test, T = {best['temperature']:.3f}:"
    for title, scores in (("test:", best["test"]), (scaled, best["test_temperature_scaled"])):
        print(f"{title:21s}acc {scores['accuracy']:.4f}  NLL {scores['nll']:.4f}  "
              f"ECE {scores['ece']:.4f}  cwECE {scores['classwise_ece']:.4f}")
    if best["teacher"]:
        print(f"teacher trainings for this search: {best['teacher']['trainings']}")


def tune(args):
    from keras_smooth.tuning import run_search

    directory, method = args.directory, args.method  # validated by the parser
    epochs = args.epochs if args.epochs is not None else (10 if args.quick else None)
    max_trials = args.max_trials
    if max_trials is None and args.tuner in ("random", "bayesian"):
        max_trials = 3 if args.quick else 10
    budget = ("hyperband budget" if args.tuner == "hyperband"
              else f"{max_trials or 'all'} trial(s)")
    from keras_smooth.training.protocol import protocol_for

    protocol = protocol_for(args.dataset).replace(max_epochs=epochs, batch_size=args.batch_size)
    if epochs is None and args.tuner == "hyperband" and protocol.max_epochs > HYPERBAND_EPOCHS:
        # Hyperband's max_epochs sets its brackets: the synthetic protocol's 500 would plan
        # hundreds of models, so without --epochs it stays at 81 (3^4).
        protocol = protocol.replace(max_epochs=HYPERBAND_EPOCHS)
    width = None if args.wide else terminal_width()
    print(fit_line(f"keras-smooth tune: {method.label} ({method.name}) on {args.dataset}, "
                   f"{args.tuner} tuner, {budget}, strategy {args.strategy}, folder {directory}",
                   width) + "\n" + fit_line(f"  training: {_describe(protocol)}", width),
          flush=True)
    started = time.perf_counter()
    result = run_search(method, dataset=args.dataset, tuner=args.tuner, max_trials=max_trials,
                        strategy=args.strategy, directory=directory, objective=args.objective,
                        grid=args.grid, protocol=protocol, seed=args.seed,
                        dataset_options=_dataset_options(args), chief_timeout=args.chief_timeout,
                        progress=TuneProgress(width=width), tensorboard=args.tensorboard)
    if result.best is None:
        ran = ", ".join(result.trials_run) or "none"
        print(fit_line(f"worker {os.environ.get('KERASTUNER_TUNER_ID')}: ran trial(s) {ran}; "
                       "the chief writes best.json", width))
        return 0
    _print_best(result.best, result.trials, args.objective, width)
    print("\n" + fit_line(f"wrote {os.path.join(directory, 'best.json')}, trials.csv"
                          + (f", SavedModel {result.best['export']}" if result.best["export"]
                             else "")
                          + f" in {time.perf_counter() - started:.0f} s", width))
    if args.tensorboard:
        print(fit_line(f"TensorBoard: tensorboard --logdir {args.tensorboard}", width))
    return 0


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings as one line each on stderr."""
    text = str(message).strip().splitlines()
    print(f"keras-smooth: warning: {text[0] if text else category.__name__}", file=sys.stderr,
          flush=True)


def _backend_name():
    import keras

    return keras.backend.backend()


def _one_line(error):
    """`Type: first line` of an error, and of the error it was raised from when that says more."""
    from keras_smooth._io import describe_error

    text = describe_error(error)
    cause = error.__cause__
    if cause is not None and str(cause).strip() and str(cause).strip() not in text:
        text += f" (from {describe_error(cause)})"
    return text


def main(argv=None):
    """Run the command; return its exit code (2 for bad input, with one line saying why).

    `module:attribute` may name a module in the working directory, as with
    `python -m` (an installed `keras-smooth` script has only its own folder on
    `sys.path`); the working directory is on the path while the command runs.
    """
    saved = list(sys.path)
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return _run(argv)
    finally:
        sys.path[:] = saved


def _run(argv):
    _quiet_logs()
    try:
        args = parse_args(argv)
    except SystemExit as exit_:  # argparse: usage and a one-line error (2), or --help (0)
        return exit_.code
    import_framework()
    from keras_smooth.datasets import DatasetUnavailable

    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            if args.command == "compare":
                return compare(args)
            if args.command == "tune":
                return tune(args)
        except (ValueError, TypeError, ConnectionError, DatasetUnavailable) as error:
            print(f"keras-smooth: error: {error}", file=sys.stderr)
            return 2
        except OSError as error:  # e.g. the disk filled up or a folder became read-only mid-run
            where = f" ({error.filename})" if error.filename else ""
            print(f"keras-smooth: error: {error.strerror or error}{where}", file=sys.stderr)
            return 1
        except Exception as error:  # noqa: BLE001 - a failure from deep inside Keras or a backend
            print(f"keras-smooth: error: {args.command} failed on the "
                  f"{_backend_name()} backend: {_one_line(error)}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\nkeras-smooth: interrupted; finished results are kept, re-run the same command "
                  "to resume", file=sys.stderr)
            return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
