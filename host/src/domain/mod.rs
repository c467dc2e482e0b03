//! Herald's domain types: the values every layer passes around instead of bare strings.
//!
//! Each type is validated once, where it enters Herald (the API, the embedding API, a config
//! file, a provider webhook), so code below that point never re-checks a phone number or a
//! category name.
//!
//! - [`TenantId`]: who owns a message, a template, an opt-out.
//! - [`PhoneNumber`]: an E.164 number that libphonenumber accepts, with its country.
//! - [`Sender`]: who a message is from: a number, a short code or an alphanumeric sender ID.
//! - [`Category`]: what a message is for, which opt-outs it obeys; `all` and `compliance` are
//!   reserved.
//! - [`MessageStatus`] and [`advance`]: where a message is, and the monotonic rule.
//! - [`Money`]: integer micro-units of a currency.
//! - [`ErrorCode`]: the stable codes of every error Herald answers with.

mod category;
mod error_code;
mod money;
mod phone;
mod sender;
mod status;
mod tenant;

pub use category::{Category, CategoryError};
pub use error_code::ErrorCode;
pub use money::Money;
pub use phone::{PhoneNumber, PhoneNumberError};
pub use sender::{Sender, SenderError};
pub use status::{MessageStatus, advance, advance_reported};
pub use tenant::{TenantId, TenantIdError, TenantStatus};

/// The longest message body Herald accepts or stores, in characters (Twilio's and SNS's limit).
pub const MAX_BODY_CHARS: usize = 1600;
