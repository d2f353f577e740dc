"""Inference: a trained directory as a `TextMatcher`, the offline state cache, online scoring
of cached pairs, serving modules and their export, and the OpenVINO backend."""
