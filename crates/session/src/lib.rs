//! Browser sessions for invoiceguard: the gateway logs a person in at the company's OpenID
//! Connect IdP (authorization code flow with PKCE, `state` bound to the browser, `nonce`), keeps
//! the session server-side in the state store every replica shares (the cookie holds only a
//! random 256-bit id, `__Host-` prefixed, `Secure`, `HttpOnly`, `SameSite`), holds it to an idle
//! and an absolute timeout on every request, notes the device it started on, refuses cross-site
//! changes (Fetch Metadata, `Origin`, a CSRF token), and ends it on logout — the person's, the
//! IdP's back-channel one, or an admin's revocation. A session yields the same
//! [`invoiceguard_authn::Principal`] as a bearer token of the same login.
//!
//! Where things are: `sessions.rs` (login, resume, end: the service the gateway calls),
//! `login.rs` (a login in progress and the authorization request), `record.rs` (the session
//! record and its timeouts), `cookie.rs`, `csrf.rs`, `device.rs`, `return_to.rs` (no open
//! redirect), `config.rs` (`[session]`).

mod config;
mod cookie;
mod csrf;
mod device;
mod login;
mod record;
mod return_to;
mod sessions;

pub use config::{DeviceChange, SameSite, SessionConfig};
pub use cookie::{
    LOGIN_COOKIE, SESSION_COOKIE, clear as clear_cookie, find as find_cookie, set as set_cookie,
    strip_own as strip_own_cookies,
};
pub use csrf::{CSRF_HEADER, check as check_csrf};
pub use device::Device;
pub use login::{LoginDemand, PendingLogin, pkce_challenge, random_token};
pub use record::{Session, Timeouts, id_hash};
pub use return_to::same_origin_path;
pub use sessions::{LOGINS_PER_ADDRESS_PER_MINUTE, Resumed, Sessions, Started};
