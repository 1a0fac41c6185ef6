"""Per-document quality signals and an offline-trainable quality model (``meta.quality``)."""
