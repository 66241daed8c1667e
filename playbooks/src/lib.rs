//! nodeprep playbooks.
