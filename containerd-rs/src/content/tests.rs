//! Unit tests of the namespaced content store.
