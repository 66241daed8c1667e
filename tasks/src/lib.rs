//! nodeprep task DSL.
