"""The text of a user's `my_methods.py` (the issue's `double_ls`), written into temporary
folders by the tests that import it as `module:attribute`."""

MY_METHODS = '''
import keras_smooth as ks
from keras_smooth.methods import Method


def _loss(params, num_classes):
    return ks.LabelSmoothingLoss(epsilon=params["epsilon"], num_classes=num_classes)


double_ls = Method(name="double_ls", label="Double LS", params={"epsilon": (0.02, 0.3)},
                   loss=_loss)
not_a_method = 42
'''
