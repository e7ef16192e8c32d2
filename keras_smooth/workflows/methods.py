"""Train one method of the registry: every setting of a grid, the best kept.

Every method ends in validation and test logits of one selected model, chosen
by validation cross-entropy against the hard labels (ILS paper §VI-a). What a
method is (its settings, targets, loss and callbacks) comes from its
`keras_smooth.methods.Method`; nothing here knows a method by name. Methods
that rescale another method's model ("+ TempS") or that are the teacher itself
(No LS) train nothing here.
"""

import dataclasses
import os

import numpy as np

from keras_smooth import methods as registry
from keras_smooth.training.fitting import ReusableModel, fit_classifier, training_failure


def _context(data, teacher, seed):
    """What the method's hooks see: the training split and, if trained, the teacher."""
    return registry.Context(
        data.x_train, data.y_train, data.num_classes, seed,
        teacher_logits=None if teacher is None else teacher.logits["train"],
        teacher_temperature=1.0 if teacher is None else teacher.temperature,
    )


def _selected(trained, params, loss, data, extra_inputs, shared):
    """The returned record of the best setting so far (predictions of its model)."""
    model = trained.model
    predict = lambda x, size: model.predict(x, batch_size=size, verbose=0)  # noqa: E731
    matrix = getattr(loss, "matrix", None)
    return {
        "params": dict(params),
        "val_nll": trained.best_val_nll,
        "best_epoch": trained.best_epoch,
        "train_logits": predict(data.x_train, 1024),
        "val_logits": predict(data.x_val, 1024),
        "test_logits": predict(data.x_test, 1024),
        "extra_logits": None if extra_inputs is None else predict(extra_inputs, 4096),
        "matrix": None if matrix is None else np.asarray(matrix).tolist(),
        "model": model if shared is None else None,  # a shared model is retrained next
    }


def _loss_config(loss):
    """The loss's Keras config (None when it has none: a plain function is not compared)."""
    get_config = getattr(loss, "get_config", None)
    try:
        return get_config() if callable(get_config) else None
    except (NotImplementedError, TypeError):
        return None


def _check_same_loss(method, first, params, config):
    """Refuse a `same_loss` method whose loss changes with the setting (it would be ignored)."""
    first_params, first_config = first
    if first_config is not None and config is not None and config != first_config:
        raise ValueError(f"method {method.name!r} says `same_loss=True`, but its loss at "
                         f"{params} differs from the one at {first_params} ({config} vs "
                         f"{first_config}); every setting would train with the first loss. "
                         "Set same_loss=False.")


def _recipe(method, params, context, shared, first):
    """The setting's recipe; with `same_loss`, on the shared model's loss, which the callbacks
    then act on (the loss this setting would build is checked to be the same)."""
    if shared is None:
        return method.build(params, context)
    _check_same_loss(method, first, params, _loss_config(method.build_loss(params, context)))
    return method.build(params, context, loss=shared.loss)


def _fit(method, params, build_model, data, recipe, **settings):
    """`fit_classifier` of one setting; a failure names the method and the setting."""
    try:
        return fit_classifier(build_model, data, recipe.targets, recipe.loss,
                              callbacks=recipe.callbacks, **settings)
    except Exception as error:  # Keras reports deep inside; say which method and setting
        raise training_failure(method, params, error) from error


def _with_tensorboard(recipe, folder, params, settings, data):
    """`recipe` plus the TensorBoard callbacks of one setting (a subfolder per setting when
    there are several)."""
    from keras_smooth.callbacks import tensorboard_run

    if settings > 1:
        folder = os.path.join(folder, ",".join(
            f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}"
            for k, v in params.items()))
    return dataclasses.replace(recipe, callbacks=[
        *recipe.callbacks, *tensorboard_run(folder, (data.x_val, data.y_val))])


def _trainable(method):
    """The resolved `method`, refused when `train_method` has nothing to train for it."""
    method = registry.resolve(method)
    if method.uses_teacher_model:
        raise ValueError(f"{method.label} is the teacher; take it from `train_teacher`.")
    if method.temperature_of is not None:
        raise ValueError(f"{method.label} trains nothing: it rescales the selected model of "
                         f"{method.temperature_of!r}.")
    return method


def train_method(method, data, teacher, build_model, *, grid, epochs, batch_size, seed,
                 learning_rate=1e-3, patience=None, extra_inputs=None, progress=None,
                 tensorboard=None):
    """Train every setting of `method`'s grid; keep the best by validation NLL.

    Args:
        method: a `keras_smooth.methods.Method`, a registered name or
            `module:attribute` (anything `keras_smooth.methods.resolve` takes).
        data: `ClassificationData`.
        teacher: the trained `Teacher` (its training logits and fitted
            temperature reach the method's hooks), or None for a method that
            does not need it.
        build_model: `build_model(input_shape, num_classes)` -> uncompiled
            model with logit outputs.
        grid: a grid name of `keras_smooth.methods.GRID_NAMES` or a dict
            `{hyperparameter: values}` (see `Method.grid`).
        epochs, batch_size, seed, learning_rate, patience: the training
            protocol of every setting, as `fit_classifier` takes it
            (`TrainingProtocol.fit_arguments`).
        extra_inputs: optional inputs whose logits are returned too (a plot grid).
        progress: optional `progress(setting, settings, epoch, epochs)`.
        tensorboard: optional folder: one TensorBoard run of each setting
            (`tensorboard` itself for a single setting, else one subfolder
            per setting, named by its values) with the training and
            validation scalars and the reliability diagram
            (`keras_smooth.callbacks.tensorboard_run`).

    Returns:
        dict with `train_logits` (the selected model's logits on `x_train`,
        e.g. to distil from it), `val_logits`, `test_logits`, `params`, `val_nll`,
        `best_epoch`, `students` (number trained), `matrix` (the loss's
        `matrix` as nested lists when it has one, e.g. LLS, LS++, OLS, cLS;
        else None), `extra_logits` (logits on `extra_inputs` or None) and
        `model` (the selected model; None when the settings share and retrain
        one compiled model, `Method.same_loss`).
    """
    method = _trainable(method)
    settings = method.settings(grid)
    context = _context(data, teacher, seed)
    best, shared, first = None, None, None
    for i, params in enumerate(settings):
        recipe = _recipe(method, params, context, shared, first)
        if method.same_loss and shared is None:  # one compiled model serves every setting
            shared = ReusableModel(build_model, data, recipe.loss, seed, learning_rate)
            first = (params, _loss_config(recipe.loss))
        report = None if progress is None else (
            lambda e, n, i=i: progress(i + 1, len(settings), e, n))
        if tensorboard is not None:
            recipe = _with_tensorboard(recipe, tensorboard, params, len(settings), data)
        trained = _fit(method, params, build_model, data, recipe, epochs=epochs,
                       batch_size=batch_size, seed=seed, learning_rate=learning_rate,
                       patience=patience, progress=report, reusable=shared)
        if best is None or trained.best_val_nll < best["val_nll"]:
            best = _selected(trained, params, recipe.loss, data, extra_inputs, shared)
    best["students"] = len(settings)
    return best
