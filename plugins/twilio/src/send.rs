//! Building the Messages API request (`POST /2010-04-01/Accounts/{AccountSid}/Messages.json`) for
//! one outbound message.
//!
//! The form follows Twilio's OpenAPI `CreateMessageRequest`: `To`, then exactly one of `From` or
//! `MessagingServiceSid`, then `Body`, and `StatusCallback` when the host asks for callbacks.

use crate::bindings::exports::herald::plugin::provider_api::{OutboundMessage, Sender};
use crate::bindings::herald::plugin::types::HttpRequest;
use crate::config::{SendConfig, is_sid};

/// The sender form field chosen for a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderField {
    /// `From`: a number, short code or alphanumeric sender ID.
    From(String),
    /// `MessagingServiceSid`: Twilio picks a sender from the service's pool.
    Service(String),
}

/// Picks the sender: the message's own, else the configured `from`, else the configured
/// Messaging Service. The error text is for operators.
pub fn choose_sender(config: &SendConfig, sender: Option<&Sender>) -> Result<SenderField, String> {
    let field = match sender {
        Some(Sender::From(from)) => SenderField::From(from.clone()),
        Some(Sender::Pool(pool)) => SenderField::Service(pool.clone()),
        None => match (&config.from, &config.messaging_service_sid) {
            (Some(from), _) => SenderField::From(from.clone()),
            (None, Some(service)) => SenderField::Service(service.clone()),
            (None, None) => {
                return Err("no sender: the message names none and neither `from` nor \
                     `messaging_service_sid` is configured"
                    .to_string());
            }
        },
    };
    match &field {
        SenderField::From(from) if from.trim().is_empty() => {
            Err("the sender (`From`) is empty".to_string())
        }
        // Twilio's schema requires MG + 32 hex digits; refusing here gives a clearer error than a
        // round trip would, and nothing has been sent yet.
        SenderField::Service(sid) if !is_sid(sid, "MG") => {
            Err("the Messaging Service SID is not MG followed by 32 hex digits".to_string())
        }
        _ => Ok(field),
    }
}

/// Builds the HTTP request that creates the message. The error text is for operators.
pub fn build_request(
    config: &SendConfig,
    message: &OutboundMessage,
) -> Result<HttpRequest, String> {
    if message.to.trim().is_empty() {
        return Err("the recipient (`To`) is empty".to_string());
    }
    let sender = choose_sender(config, message.sender.as_ref())?;

    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("To", &message.to);
    match &sender {
        SenderField::From(from) => form.append_pair("From", from),
        SenderField::Service(sid) => form.append_pair("MessagingServiceSid", sid),
    };
    form.append_pair("Body", &message.body);
    if let Some(callback) = message.status_callback.as_deref().filter(|c| !c.is_empty()) {
        form.append_pair("StatusCallback", callback);
    }
    let body = form.finish().into_bytes();

    Ok(HttpRequest {
        method: "POST".to_string(),
        url: format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            config.base_url, config.account_sid
        ),
        headers: vec![
            (
                "Content-Type".to_string(),
                "application/x-www-form-urlencoded".to_string(),
            ),
            ("Accept".to_string(), "application/json".to_string()),
            (
                "Authorization".to_string(),
                config.credentials.authorization(),
            ),
            (
                "User-Agent".to_string(),
                concat!("herald-twilio/", env!("CARGO_PKG_VERSION")).to_string(),
            ),
        ],
        body,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::bindings::exports::herald::plugin::provider_api::Encoding;
    use crate::config::Credentials;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    const SID: &str = "AC0123456789abcdef0123456789abcdef";
    const MG: &str = "MG0123456789abcdef0123456789abcdef";

    fn config(from: Option<&str>, service: Option<&str>) -> SendConfig {
        SendConfig {
            account_sid: SID.to_string(),
            credentials: Credentials {
                user: SID.to_string(),
                secret: "token".to_string(),
            },
            from: from.map(str::to_string),
            messaging_service_sid: service.map(str::to_string),
            base_url: "https://api.twilio.com".to_string(),
        }
    }

    fn message(sender: Option<Sender>, callback: Option<&str>) -> OutboundMessage {
        OutboundMessage {
            message_id: "m-1".to_string(),
            to: "+14155552671".to_string(),
            sender,
            body: "Hi & bye = 100% ✓".to_string(),
            encoding: Encoding::Ucs2,
            segments: 1,
            status_callback: callback.map(str::to_string),
            attempt: 1,
        }
    }

    fn form(request: &HttpRequest) -> Vec<(String, String)> {
        form_urlencoded::parse(&request.body).into_owned().collect()
    }

    #[test]
    fn request_shape() {
        let request = build_request(
            &config(Some("+15557122661"), None),
            &message(None, Some("https://herald.example/webhooks/twilio?x=1")),
        )
        .unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(
            request.url,
            format!("https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages.json")
        );
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(header("Content-Type"), "application/x-www-form-urlencoded");
        let expected = STANDARD.encode(format!("{SID}:token"));
        assert_eq!(header("Authorization"), format!("Basic {expected}"));
        let fields = form(&request);
        let names: Vec<_> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["To", "From", "Body", "StatusCallback"]);
        assert_eq!(fields[2].1, "Hi & bye = 100% ✓");
        assert_eq!(fields[3].1, "https://herald.example/webhooks/twilio?x=1");
        let raw = String::from_utf8(request.body).unwrap();
        assert!(raw.starts_with("To=%2B14155552671&From=%2B15557122661&Body=Hi+%26+bye"));
    }

    #[test]
    fn sender_precedence() {
        let both = config(Some("+1555"), Some(MG));
        let pool = Sender::Pool(MG.to_string());
        assert_eq!(
            choose_sender(&both, Some(&Sender::From("+1777".into()))),
            Ok(SenderField::From("+1777".into()))
        );
        assert_eq!(
            choose_sender(&config(Some("+1555"), None), Some(&pool)),
            Ok(SenderField::Service(MG.into()))
        );
        assert_eq!(
            choose_sender(&both, None),
            Ok(SenderField::From("+1555".into()))
        );
        assert_eq!(
            choose_sender(&config(None, Some(MG)), None),
            Ok(SenderField::Service(MG.into()))
        );
        assert!(choose_sender(&config(None, None), None).is_err());
        assert!(choose_sender(&config(None, Some("MGnope")), None).is_err());
    }

    #[test]
    fn service_form_has_no_from_and_no_empty_callback() {
        let request = build_request(&config(None, Some(MG)), &message(None, Some(""))).unwrap();
        let names: Vec<_> = form(&request).into_iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["To", "MessagingServiceSid", "Body"]);
    }
}
