"""Readers for the input formats (wiki, baike, news, BERT text) and compression."""
