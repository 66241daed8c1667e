//! Container and VM harness for nodeprep integration tests.
