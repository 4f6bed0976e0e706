// L1 loss. (being written)
