// max_pool, avg_pool, global_avg_pool: forward and backward. (being written)
