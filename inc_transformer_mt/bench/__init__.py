"""Measuring where translation time goes (per-op breakdown); the speed benchmark builds on it."""
