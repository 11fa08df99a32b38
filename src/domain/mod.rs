//! The domain: what warden's entities are and the rules on their values,
//! with no database and no HTTP in sight.

pub mod error;
pub mod profile;
pub mod roles;
