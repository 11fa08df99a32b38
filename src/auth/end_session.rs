//! RP-initiated logout (placeholder)
