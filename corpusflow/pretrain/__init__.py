"""Instance building: masking, pairs, and tf.train.Example encoding."""
