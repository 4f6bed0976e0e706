// weighted sum of K tensors by a weight vector (the mixed op). (being written)
