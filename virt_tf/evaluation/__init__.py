"""Evaluation: task metrics of a classifier, paired statistics (McNemar, gap closed), the
predictions a run saved, and the per-layer L_virt alignment of a trained pair."""
