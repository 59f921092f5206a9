"""Inference: the inference folder (config, weights, encoders) and the pipeline that turns two voices into
a video of both people (:class:`DyadGenPipeline`)."""
