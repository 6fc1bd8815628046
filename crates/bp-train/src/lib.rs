//! Networks, optimizers and the training loop.
