pub mod sent_emails;
pub mod launched;
