//! Channel concat and split, spatial slice with offset. Shader: `shaders/layout.wgsl`. (being written)
