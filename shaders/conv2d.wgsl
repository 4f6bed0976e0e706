// conv2d: forward, backward_input, backward_weight, backward_bias. (being written)
