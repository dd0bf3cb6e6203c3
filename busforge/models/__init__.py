"""Model weights: the tiny random-weight test model and resolution/hashing of local or Hub weights."""
