"""`python -m keras_smooth` runs the `keras-smooth` command."""

import sys

from keras_smooth.cli import main

sys.exit(main())
