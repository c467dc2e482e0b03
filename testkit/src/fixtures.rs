//! Twilio's own descriptions of its API, kept as data so tests can check requests and responses
//! against them rather than against the carrier's idea of Twilio.

/// The CreateMessage operation and the Message resource, extracted from Twilio's OpenAPI
/// description of the 2010-04-01 API (JSON: `request.required`, `request.properties`,
/// `response_201_properties`, …).
pub const TWILIO_CREATE_MESSAGE: &str = include_str!("../fixtures/twilio-create-message.json");
