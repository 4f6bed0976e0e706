//! Matmul with transposes, linear. Shader: `shaders/matmul.wgsl`. (being written)
