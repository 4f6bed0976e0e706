//! Batch normalization, training and evaluation mode, with and without affine. Shader: `shaders/batchnorm.wgsl`. (being written)
