pub mod client;
pub mod pass;
