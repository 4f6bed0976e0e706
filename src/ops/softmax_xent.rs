//! Softmax, fused log-softmax + cross-entropy. Shader: `shaders/softmax_xent.wgsl`. (being written)
