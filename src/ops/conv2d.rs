//! Conv2d: forward, backward_input, backward_weight, backward_bias. Shader: `shaders/conv2d.wgsl`. (being written)
