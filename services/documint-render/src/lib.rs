//! DocuMint's renderer: one typst template plus JSON data in, one PDF out.
//!
//! It is its own binary so that the web tier and the worker never link typst, and so that
//! each render runs in a process the worker can cap and kill: typst has no time, memory or
//! stack bound of its own, and some templates abort the compiler outright.
//!
//! - [`protocol`]: the job on standard input, the result on standard output.
//! - [`engine`]: fonts, the sandboxed world, compilation, missing-glyph scan, PDF export.

pub mod engine;
pub mod protocol;

pub use engine::{Engine, render};
pub use protocol::{Diagnostic, Header, Job};
