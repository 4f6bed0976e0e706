//! Max_pool, avg_pool, global_avg_pool: forward and backward. Shader: `shaders/pool.wgsl`. (being written)
