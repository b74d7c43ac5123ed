//! Services together: auth with accounts (registrations, role changes,
//! disabling, outages between them), auth with the worker (the
//! verification email and its link), chat on auth's tokens and events,
//! and the scheduler with the worker launching real host agents.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod auth_and_accounts;
mod auth_and_chat;
mod auth_and_worker;
mod gateway;
mod scheduling_fleet;
