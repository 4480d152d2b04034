"""Classifiers on the feature store.

- :mod:`jobs.models.inputs` turns segments of stored frames into model inputs (NumPy only; used by
  training and by scoring workers alike);
- :mod:`jobs.models.baseline` fits per-segment feature statistics with scikit-learn and exports
  them with skl2onnx;
- :mod:`jobs.models.cnn` trains a small CNN on log-mel patches with torch (optional ``cnn``
  extra, imported lazily) and exports it with ``torch.onnx.export``;
- :mod:`jobs.models.onnx_model` loads a model folder (``model.onnx`` + ``model.json``) and
  predicts class probabilities with onnxruntime: scoring needs nothing else.
"""
