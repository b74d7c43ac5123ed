//! Services together: auth with accounts (registrations, role changes,
//! disabling, outages between them), auth with the worker (the
//! verification email and its link), and chat on auth's tokens and events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod auth_and_accounts;
mod auth_and_chat;
mod auth_and_worker;
