pub mod launched;
pub mod sent_emails;
