"""Accuracy-driven INT8 tuning: the fallback search (tuner) and the recipe pipeline (pipeline)."""
