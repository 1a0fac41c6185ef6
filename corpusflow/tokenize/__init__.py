"""BERT-style basic + WordPiece tokenizer for Chinese."""

import os

#: The standard Chinese BERT vocabulary (Google BERT-Base Chinese, Apache-2.0), bundled in the package.
DEFAULT_VOCAB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                             "bert_base_chinese_vocab.txt")
