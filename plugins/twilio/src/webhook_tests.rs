//! Tests for reading status callbacks and inbound messages.

#![allow(clippy::unwrap_used, clippy::panic)]

use super::*;
use crate::bindings::exports::herald::plugin::provider_api::DeliveryState;

fn post(body: &str) -> HttpRequest {
    HttpRequest {
        method: "POST".to_string(),
        url: "https://herald.example/webhooks/twilio".to_string(),
        headers: vec![(
            "Content-Type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        )],
        body: body.as_bytes().to_vec(),
    }
}

fn one(body: &str) -> WebhookEvent {
    let mut events = parse(&post(body)).unwrap();
    assert_eq!(events.len(), 1);
    events.remove(0)
}

fn status(body: &str) -> StatusUpdate {
    match one(body) {
        WebhookEvent::Status(update) => update,
        other => panic!("{other:?}"),
    }
}

fn inbound_of(body: &str) -> InboundMessage {
    match one(body) {
        WebhookEvent::Inbound(message) => message,
        other => panic!("{other:?}"),
    }
}

fn is_malformed(body: &str) -> bool {
    matches!(parse(&post(body)), Err(WebhookError::Malformed(_)))
}

#[test]
fn delivered_callback() {
    let update = status(
        "SmsSid=SM1&SmsStatus=delivered&MessageStatus=delivered&To=%2B15558675310\
         &MessageSid=SM1&AccountSid=AC1&From=%2B15557122661&ApiVersion=2010-04-01&RawDlrDoneDate=2308240501",
    );
    assert_eq!(update.provider_message_id, "SM1");
    assert_eq!(update.state, DeliveryState::Delivered);
    assert_eq!(update.provider_status, "delivered");
    assert!(update.error.is_none());
    assert_eq!(update.segments, None);
    assert!(update.price.is_none());
}

#[test]
fn undelivered_callback_with_error_segments_and_price() {
    let update = status(
        "MessageSid=SM2&MessageStatus=undelivered&ErrorCode=30003&NumSegments=3&Price=-0.0237&PriceUnit=USD",
    );
    assert_eq!(update.state, DeliveryState::Undelivered);
    let error = update.error.unwrap();
    assert_eq!(error.code.as_deref(), Some("30003"));
    assert!(error.message.contains("30003"));
    assert_eq!(update.segments, Some(3));
    assert_eq!(update.price.unwrap().micros, 23_700);
}

#[test]
fn error_message_field_is_used_when_present() {
    let update =
        status("MessageSid=SM2&MessageStatus=failed&ErrorCode=30007&ErrorMessage=Carrier+filtered");
    assert_eq!(update.error.unwrap().message, "Carrier filtered");
}

/// Every outbound status Twilio documents is a status callback with its state and Twilio's word.
#[test]
fn status_words() {
    let cases = [
        ("queued", DeliveryState::Queued),
        ("accepted", DeliveryState::Queued),
        ("scheduled", DeliveryState::Queued),
        ("sending", DeliveryState::Sending),
        ("sent", DeliveryState::Sent),
        ("delivered", DeliveryState::Delivered),
        ("undelivered", DeliveryState::Undelivered),
        ("partially_delivered", DeliveryState::Undelivered),
        ("failed", DeliveryState::Failed),
        ("canceled", DeliveryState::Canceled),
        ("read", DeliveryState::Read),
    ];
    for (word, state) in cases {
        let update = status(&format!("MessageSid=SM3&MessageStatus={word}"));
        assert_eq!(update.state, state, "{word}");
        assert_eq!(update.provider_status, word);
    }
}

/// `partially_delivered` (which got a 400 before) is undelivered, with an error saying why.
#[test]
fn partially_delivered_is_undelivered_with_a_reason() {
    let update = status("MessageSid=SM3&MessageStatus=partially_delivered");
    assert_eq!(update.state, DeliveryState::Undelivered);
    let error = update.error.unwrap();
    assert_eq!(error.code, None);
    assert!(error.message.contains("partially delivered"), "{error:?}");
    // Twilio's own code wins when it sends one.
    let update = status("MessageSid=SM3&MessageStatus=partially_delivered&ErrorCode=30008");
    assert_eq!(update.error.unwrap().code.as_deref(), Some("30008"));
}

/// `receiving` and `received` are the two inbound statuses: such a request is an inbound message.
#[test]
fn inbound_status_words_are_inbound_messages() {
    for word in ["receiving", "received"] {
        let message = inbound_of(&format!(
            "MessageSid=SM9&MessageStatus={word}&From=%2B1555&To=%2B1777&Body=hi"
        ));
        assert_eq!(message.provider_message_id, "SM9", "{word}");
    }
}

/// The callback's `From` is the sender the message went out from; an empty one is none.
#[test]
fn status_callback_names_the_sender() {
    let update = status("MessageSid=SM3&MessageStatus=sent&From=%2B15005550006");
    assert_eq!(update.sender.as_deref(), Some("+15005550006"));
    let update = status("MessageSid=SM3&MessageStatus=sent&From=");
    assert_eq!(update.sender, None);
}

#[test]
fn legacy_sms_status_alone_is_a_status_callback() {
    let update = status("SmsSid=SM4&SmsStatus=sent");
    assert_eq!(update.provider_message_id, "SM4");
    assert_eq!(update.state, DeliveryState::Sent);
}

#[test]
fn unknown_status_words_and_missing_ids_are_malformed() {
    assert!(is_malformed("MessageSid=SM5&MessageStatus=exploded"));
    assert!(is_malformed("MessageStatus=sent"));
    assert!(is_malformed("AccountSid=AC1"));
    assert!(is_malformed(""));
}

#[test]
fn inbound_message() {
    let message = inbound_of(
        "ToCountry=US&ToState=&SmsMessageSid=SM6&NumMedia=0&ToCity=&FromZip=&SmsSid=SM6\
         &FromState=CA&SmsStatus=received&FromCity=&Body=Hello+%F0%9F%91%8B+there&FromCountry=US\
         &To=%2B15557122661&ToZip=&NumSegments=2&MessageSid=SM6&AccountSid=AC1\
         &From=%2B15558675310&ApiVersion=2010-04-01",
    );
    assert_eq!(message.provider_message_id, "SM6");
    assert_eq!(message.from, "+15558675310");
    assert_eq!(message.to, "+15557122661");
    assert_eq!(message.body, "Hello 👋 there");
    assert_eq!(message.segments, Some(2));
}

#[test]
fn body_without_status_is_inbound_and_body_is_kept_verbatim() {
    let message = inbound_of("MessageSid=SM7&From=%2B1555&To=%2B1777&Body=+STOP+");
    assert_eq!(message.body, " STOP ");
    assert_eq!(message.segments, None);
}

#[test]
fn inbound_without_sender_is_malformed() {
    assert!(is_malformed(
        "MessageSid=SM8&To=%2B1777&Body=hi&SmsStatus=received"
    ));
    assert!(is_malformed("From=%2B1555&To=%2B1777&Body=hi"));
}

#[test]
fn non_form_bodies_are_malformed() {
    let mut request = post(r#"{"MessageStatus":"sent"}"#);
    request.headers = vec![("content-type".into(), "application/json".into())];
    assert!(matches!(parse(&request), Err(WebhookError::Malformed(_))));
}
