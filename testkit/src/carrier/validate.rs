//! Request validation in Twilio's order, and Twilio's error texts.
//!
//! Phone numbers are checked the way Twilio checks them, with libphonenumber's metadata (the
//! `phonenumber` crate): a number must parse in international form and be a valid number for its
//! country; the carrier then uses its E.164 form, as Twilio's responses and webhooks do.

use super::state::CarrierState;

/// Longest accepted body, in characters (Twilio error 21617 above it).
const MAX_BODY_CHARS: usize = 1600;

/// Twilio's message text for error codes the carrier produces or tests are likely to script.
pub(crate) fn default_message(code: u32) -> String {
    let text = match code {
        20003 => "Authenticate",
        20404 => "The requested resource was not found",
        20429 => "Too Many Requests",
        20500 => "Internal Server Error",
        20503 => "Service Unavailable",
        21211 => "The 'To' number is not a valid phone number.",
        21408 => {
            "Permission to send an SMS has not been enabled for the region indicated by the 'To' number"
        }
        21602 => "Message body is required.",
        21603 => "A 'From' phone number is required.",
        21604 => "A 'To' phone number is required.",
        21606 => {
            "The 'From' phone number provided is not a valid message-capable Twilio phone number for this destination/account"
        }
        21609 => "Invalid StatusCallback url",
        21610 => "Attempt to send to unsubscribed recipient",
        21611 => "This 'From' number has exceeded the maximum number of queued messages",
        21612 => "The 'To' phone number is not currently reachable via SMS",
        21614 => "'To' number is not a valid mobile number",
        21617 => "The concatenated message body exceeds the 1600 character limit.",
        30001 => "Queue overflow",
        _ => return format!("Error {code}"),
    };
    text.to_owned()
}

/// The E.164 form of `number` when it is a valid phone number written in international form.
pub(crate) fn e164(number: &str) -> Option<String> {
    let parsed = phonenumber::parse(None, number).ok()?;
    phonenumber::is_valid(&parsed)
        .then(|| parsed.format().mode(phonenumber::Mode::E164).to_string())
}

/// Loads the phone-number metadata, which otherwise happens on the first request.
pub(crate) fn warm_up() {
    let _ = e164("+15005550006");
}

fn first<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, v)| k == name && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

/// A create request that passed validation.
pub(crate) struct SendRequest {
    pub(crate) to: String,
    pub(crate) from: Option<String>,
    pub(crate) messaging_service_sid: Option<String>,
    pub(crate) body: String,
    pub(crate) num_media: usize,
    pub(crate) status_callback: Option<String>,
}

/// Twilio's checks, in Twilio's order. `Err` carries the error code and message.
pub(crate) fn validate(
    state: &CarrierState,
    form: &[(String, String)],
) -> Result<SendRequest, (u32, String)> {
    let Some(to) = first(form, "To") else {
        return Err((21604, default_message(21604)));
    };
    let Some(to) = e164(to) else {
        return Err((
            21211,
            format!("The 'To' number {to} is not a valid phone number."),
        ));
    };
    let from = first(form, "From");
    let messaging_service_sid = first(form, "MessagingServiceSid");
    if from.is_none() && messaging_service_sid.is_none() {
        return Err((21603, default_message(21603)));
    }
    if let Some(ms) = messaging_service_sid {
        let valid = ms.len() == 34
            && ms.starts_with("MG")
            && ms[2..].bytes().all(|b| b.is_ascii_hexdigit());
        if !valid {
            return Err((21701, format!("The Messaging Service Sid {ms} is invalid.")));
        }
    }
    let body = first(form, "Body").unwrap_or_default();
    let num_media = form.iter().filter(|(k, _)| k == "MediaUrl").count();
    if body.is_empty() && num_media == 0 && first(form, "ContentSid").is_none() {
        return Err((21602, default_message(21602)));
    }
    if body.chars().count() > MAX_BODY_CHARS {
        return Err((21617, default_message(21617)));
    }
    let status_callback = first(form, "StatusCallback").map(str::to_owned);
    if let Some(cb) = &status_callback {
        let valid = url::Url::parse(cb).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !valid {
            return Err((21609, default_message(21609)));
        }
    }
    let sender = from.unwrap_or("your Messaging Service");
    match to.as_str() {
        "+15005550001" => {
            return Err((
                21211,
                format!("The 'To' number {to} is not a valid phone number."),
            ));
        }
        "+15005550002" => {
            let msg = format!(
                "The 'To' phone number: {to}, is not currently reachable using the 'From' phone number: {sender} via SMS."
            );
            return Err((21612, msg));
        }
        "+15005550004" => return Err((21610, default_message(21610))),
        "+15005550009" => return Err((21614, format!("To number: {to}, is not a mobile number"))),
        _ => {}
    }
    if let Some(from) = from
        && state.is_opted_out(&to, from)
    {
        return Err((21610, default_message(21610)));
    }
    Ok(SendRequest {
        to,
        from: from.map(str::to_owned),
        messaging_service_sid: messaging_service_sid.map(str::to_owned),
        body: body.to_owned(),
        num_media,
        status_callback,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Valid numbers in international form come back in E.164; anything else is refused.
    #[test]
    fn phone_numbers() {
        assert_eq!(e164("+14155552671").as_deref(), Some("+14155552671"));
        assert_eq!(e164("+1 415 555 2671").as_deref(), Some("+14155552671"));
        assert_eq!(e164("+15005550006").as_deref(), Some("+15005550006"));
        for bad in [
            "14155552671",
            "+04155552671",
            "+1415555267100000",
            "+12",
            "",
            "+1555123456",
        ] {
            assert_eq!(e164(bad), None, "{bad}");
        }
    }
}
