"""fer3d.predict: using a trained model on samples and faces it was not trained on.

Stage: weights + inputs -> predictions. :mod:`~fer3d.predict.evaluate` tests a cell's
weights on shard samples (``fer3d-eval``). The rest serves new faces (docs/predict.md):
:mod:`~fer3d.predict.final` (a final model's directory), :mod:`~fer3d.predict.card` (the
model card), :mod:`~fer3d.predict.predictor` (``fer3d.load_model``), :mod:`~fer3d.predict.scans`
(raw scans and shards as inputs), :mod:`~fer3d.predict.rows` (one row per input),
:mod:`~fer3d.predict.eager` and :mod:`~fer3d.predict.onnxrt` (the members in PyTorch or
ONNX Runtime) and :mod:`~fer3d.predict.export` (``fer3d-export``).
"""
