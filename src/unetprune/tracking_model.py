"""unetprune generator as an MLflow pyfunc model (logged by `unetprune track`).

This file is the logged model's code (MLflow "models from code": saved as text with the model
and run when it is loaded; nothing is pickled).  ``predict`` takes a float32 array (N, 3, H, W)
in [-1, 1] and returns the generated images, same shape; a generator of several inputs takes a
dict of arrays by name (the names and shapes of its model family's ``pyfunc_inputs``, e.g.
Wav2Lip's ``{"face": (N, 6, 96, 96) BGR in [0, 1], "mel": (N, 1, 80, 16)}`` -> (N, 3, 96, 96)
in [0, 1]).  It generates in the evaluation mode the experiment scored with (params ``mode``:
train_bn | eval, ``seed``: dropout seed of train_bn; defaults in the model config, which also
holds the input names as ``inputs``).  The weights are the model's artifact ``checkpoint``: a
self-describing unetprune checkpoint read with torch.load(weights_only=True)
(unetprune.checkpoint.load_checkpoint); needs the unetprune package.

Imports are absolute: MLflow runs this file as a module of its own.
"""

import mlflow
from mlflow.pyfunc import PythonModel


class UnetpruneGenerator(PythonModel):
    def load_context(self, context):
        from unetprune.checkpoint import generator_from_checkpoint, load_checkpoint

        self.generator = generator_from_checkpoint(load_checkpoint(context.artifacts["checkpoint"]))
        config = dict(context.model_config or {})
        self.inputs = list(config.pop("inputs", None) or ["input"])
        self.defaults = {"mode": "train_bn", "seed": 0, **config}

    def predict(self, context, model_input, params=None):
        import numpy as np
        import torch

        from unetprune.translate import generation_mode

        p = {**self.defaults, **(params or {})}
        if isinstance(model_input, dict):  # several inputs, by name, in the generator's order
            xs = [torch.as_tensor(np.asarray(model_input[k], dtype=np.float32)) for k in self.inputs]
        else:
            xs = [torch.as_tensor(np.asarray(model_input, dtype=np.float32))]
        with generation_mode(self.generator, str(p["mode"]), int(p["seed"])) as g:
            return g(*xs).numpy()


if __name__ != "unetprune.tracking_model":  # run as the logged model's code, not imported by the package
    mlflow.models.set_model(UnetpruneGenerator())
