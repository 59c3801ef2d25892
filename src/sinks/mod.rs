//! Sinks: where events leave factorio-isr.
//!
//! - [`stdout`]: every event as one JSON line on standard output, the default when no other
//!   sink is configured and what `replay` writes.
//!
//! How they fail: a sink's write error is returned to the pipeline, which stops feeding it. A
//! closed stdout (`factorio-isr replay … | head`) is a normal end, not an error.

pub mod stdout;
