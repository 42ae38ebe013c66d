"""CI regression check of tuned models against a committed baseline manifest."""
