//! Reading and writing IDX files, gzip'd or raw, and the MNIST loader.
