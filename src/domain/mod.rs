//! The domain: the entities warden keeps and the pure rules about them —
//! users, sessions with their refresh-rotation state machine, signing keys,
//! audit events, OAuth clients with their codes and consents, the validation of user fields, roles and the domain errors.
//!
//! This tier knows nothing of HTTP or SQL (no axum, no sqlx): storage maps
//! rows to these types, the auth services decide with them.

pub mod audit;
pub mod client;
pub mod error;
pub mod key;
pub mod outbox;
pub mod profile;
pub mod roles;
pub mod session;
pub mod user;

pub use audit::{AuditQuery, AuditRecord};
pub use client::{AuthorizationCodeRecord, ClientRecord, CodeRedemption, ConsentRecord};
pub use key::SigningKeyRecord;
pub use outbox::{BACKCHANNEL_LOGOUT, BackchannelLogout, OutboxItem};
pub use session::{
    PresentedRefresh, RefreshLifetimes, RefreshOutcome, RefreshRecord, RefreshState, RefreshStep,
    SessionOpened, SessionRecord, refresh_step, refreshed_expiry,
};
pub use user::{
    PasswordSet, UniqueField, UserChange, UserChangeLog, UserChanges, UserQuery, UserRecord,
    UserSecurity, UserUpdate,
};
