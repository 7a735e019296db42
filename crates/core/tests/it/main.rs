//! Integration tests of testbay-core, one module per core module, and the layers check.
mod layers;
