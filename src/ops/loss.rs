//! L1 loss. Shader: `shaders/loss.wgsl`. (being written)
