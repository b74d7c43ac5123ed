pub mod sent_emails;
