// channel concat and split, spatial slice with offset. (being written)
