"""BERT-style basic + WordPiece tokenizer for Chinese."""
