//! Sessions for actix: not built yet; the actix adapter is planned (see the project issues). This crate exports nothing.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
