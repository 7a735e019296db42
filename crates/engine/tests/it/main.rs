//! Integration tests of testbay-engine, one module per engine module.
