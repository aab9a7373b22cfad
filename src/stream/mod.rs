//! The byte stream of a backup: the dump scanner, compression, encryption, progress of a long read.

pub mod compress;
pub mod crypt;
pub mod progress;
pub mod scan;
