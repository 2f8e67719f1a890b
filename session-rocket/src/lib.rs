//! Sessions for rocket: not built yet; the rocket adapter is planned (see the project issues). This crate exports nothing.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
