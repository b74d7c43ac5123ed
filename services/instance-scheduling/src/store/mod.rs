//! The scheduler's tables, one module each; allocation and the end of a
//! session are functions of the schema (`sched_allocate`,
//! `sched_end_session`), one statement each.
pub mod fleet;
pub mod instances;
pub mod sessions;
