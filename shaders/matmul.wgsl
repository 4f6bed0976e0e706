// matmul with transposes, linear. (being written)
