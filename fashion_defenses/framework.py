"""TensorFlow and Keras, imported without their start-up noise, and the versions
of the libraries a result was made with."""
import os
import platform

import numpy as np


def _import_tensorflow_quietly():
    """Import TensorFlow and Keras with their C++ start-up lines (absl, oneDNN, CPU
    features) sent to /dev/null: TF_CPP_MIN_LOG_LEVEL does not hide them, and
    TF_ENABLE_ONEDNN_OPTS=0 would make training 3x slower."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    saved_stderr = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import keras
        import tensorflow
        tensorflow.constant(0.0) + 1.0  # runtime initialisation logs here too
        tensorflow.get_logger().setLevel("ERROR")  # e.g. retracing notices of Keras' predict
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        os.close(devnull)
    return tensorflow, keras


tf, keras = _import_tensorflow_quietly()


def library_versions():
    import scipy
    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "platform": platform.platform(), "devices": [d.name for d in tf.config.list_physical_devices()]}
