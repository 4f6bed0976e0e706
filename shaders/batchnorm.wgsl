// batch normalization, training and evaluation mode, with and without affine. (being written)
