"""Proxy evaluation: small decoder-only models trained on a mixture, scored in bits per byte on held-out text."""
