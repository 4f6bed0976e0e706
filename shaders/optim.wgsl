// SGD with momentum, Adam, gradient-norm clipping. (being written)
