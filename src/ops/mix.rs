//! Weighted sum of K tensors by a weight vector (the mixed op). Shader: `shaders/mix.wgsl`. (being written)
