"""Deduplication keys: exact text/line hashes and MinHash signatures."""
