"""Word segmenters behind one interface (see ``base``)."""
