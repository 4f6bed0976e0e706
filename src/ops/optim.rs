//! SGD with momentum, Adam, gradient-norm clipping. Shader: `shaders/optim.wgsl`. (being written)
