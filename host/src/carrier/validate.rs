//! Request validation in Twilio's order, Twilio's error texts, E.164 and segment counting.

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

/// `^\+[1-9]\d{1,14}$`
pub(crate) fn is_e164(number: &str) -> bool {
    let Some(digits) = number.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// Segment count: GSM-7 (160 / 153 septets, extension characters cost 2) when every character is
/// in the GSM alphabet, otherwise UCS-2 (70 / 67 UTF-16 units). Approximate: no split rules.
pub(crate) fn segments(body: &str) -> usize {
    const GSM: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                       ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    const GSM_EXT: &str = "\u{c}^{}\\[~]|€";
    let mut septets = 0usize;
    let mut gsm = true;
    for c in body.chars() {
        if GSM.contains(c) {
            septets += 1;
        } else if GSM_EXT.contains(c) {
            septets += 2;
        } else {
            gsm = false;
            break;
        }
    }
    let (units, single, multi) = if gsm {
        (septets, 160, 153)
    } else {
        (body.encode_utf16().count(), 70, 67)
    };
    match units {
        0 => 1,
        n if n <= single => 1,
        n => n.div_ceil(multi),
    }
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
    if !is_e164(to) {
        return Err((
            21211,
            format!("The 'To' number {to} is not a valid phone number."),
        ));
    }
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
    match to {
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
        && state.is_opted_out(to, from)
    {
        return Err((21610, default_message(21610)));
    }
    Ok(SendRequest {
        to: to.to_owned(),
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

    /// E.164 needs a plus, a non-zero first digit and 2 to 15 digits.
    #[test]
    fn e164() {
        assert!(is_e164("+14155552671"));
        assert!(is_e164("+12"));
        assert!(!is_e164("14155552671"));
        assert!(!is_e164("+04155552671"));
        assert!(!is_e164("+1415555267100000"));
        assert!(!is_e164("+1 415 555 2671"));
    }

    /// GSM-7 bodies use 160/153 septets, others 70/67 UTF-16 units.
    #[test]
    fn segment_counts() {
        assert_eq!(segments("hi"), 1);
        assert_eq!(segments(&"a".repeat(160)), 1);
        assert_eq!(segments(&"a".repeat(161)), 2);
        assert_eq!(segments(&"a".repeat(307)), 3);
        assert_eq!(segments(&"€".repeat(80)), 1);
        assert_eq!(segments(&"€".repeat(81)), 2);
        assert_eq!(segments(&"ç".repeat(70)), 1);
        assert_eq!(segments(&"ç".repeat(71)), 2);
        assert_eq!(segments("😀"), 1);
    }
}
