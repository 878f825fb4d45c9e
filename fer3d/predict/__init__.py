"""fer3d.predict: using a trained model on samples it was not trained on.

Stage: weights + inputs -> predictions. :mod:`~fer3d.predict.evaluate` tests a cell's
weights on shard samples (``fer3d-eval``).
"""
