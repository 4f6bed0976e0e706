// softmax, fused log-softmax + cross-entropy. (being written)
