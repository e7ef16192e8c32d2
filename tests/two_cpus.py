"""Split the CPU into two logical devices; import this first in a worker process.

MirroredStrategy then has two replicas on a machine without GPUs. The split
must happen before TensorFlow initialises, so the worker scripts import this
module before Keras or keras_smooth.
"""

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)
