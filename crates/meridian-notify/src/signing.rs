//! Standard Webhooks signatures: `v1,<base64(HMAC-SHA256(secret, "{id}.{timestamp}.{body}"))>`.
//!
//! The secret is `whsec_` followed by the base64 of its bytes; the HMAC key is those bytes.
//! Several active secrets (during a rotation) give several space-separated signatures in one
//! `webhook-signature` header; a receiver accepts the message if any of them verifies.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Random bytes in a generated secret (the spec asks for 24 to 64).
pub const SECRET_BYTES: usize = 32;

/// Header carrying the message id (stable across retries).
pub const HEADER_ID: &str = "webhook-id";
/// Header carrying the attempt's time in seconds since the epoch.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// Header carrying the signatures.
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// A secret is not `whsec_<base64>` of at least one byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("webhook secret is not `whsec_` and base64 of 1-64 bytes")]
pub struct InvalidSecret;

/// A new secret: `whsec_` and the base64 of 32 random bytes.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::getrandom(&mut bytes).expect("the operating system's random source works");
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

/// The HMAC key of a secret: the base64-decoded part after `whsec_`.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, InvalidSecret> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).ok_or(InvalidSecret)?;
    let key = STANDARD.decode(encoded).map_err(|_| InvalidSecret)?;
    if key.is_empty() || key.len() > 64 {
        return Err(InvalidSecret);
    }
    Ok(key)
}

/// The signature of one message with one secret: `v1,<base64>`.
pub fn sign(secret: &str, message_id: &str, timestamp_s: i64, body: &[u8]) -> Result<String, InvalidSecret> {
    let key = secret_key(secret)?;
    Ok(format!("v1,{}", STANDARD.encode(mac(&key, message_id, timestamp_s, body))))
}

fn mac(key: &[u8], message_id: &str, timestamp_s: i64, body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac takes keys of any length");
    mac.update(message_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// The `webhook-signature` header value: one signature per secret, space-separated.
pub fn signature_header<'a>(secrets: impl IntoIterator<Item = &'a str>, message_id: &str, timestamp_s: i64, body: &[u8]) -> Result<String, InvalidSecret> {
    let signatures = secrets.into_iter().map(|s| sign(s, message_id, timestamp_s, body)).collect::<Result<Vec<_>, _>>()?;
    Ok(signatures.join(" "))
}

/// Whether any `v1` signature in `header` is the signature of the message with `secret`
/// (constant-time comparison). Does not check the timestamp's age.
pub fn verify(secret: &str, message_id: &str, timestamp_s: i64, body: &[u8], header: &str) -> bool {
    let Ok(key) = secret_key(secret) else { return false };
    header.split(' ').filter_map(|s| s.strip_prefix("v1,")).filter_map(|b64| STANDARD.decode(b64).ok()).any(|given| {
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("hmac takes keys of any length");
        mac.update(message_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp_s.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&given).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        // The example of the Standard Webhooks specification and its reference libraries.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let signature = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(verify(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, &format!("v1,bogus {signature}")));
        assert!(!verify(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331, body, &signature));
    }

    #[test]
    fn generated_secrets_have_32_random_bytes() {
        let a = generate_secret();
        assert!(a.starts_with("whsec_"));
        assert_eq!(secret_key(&a).unwrap().len(), SECRET_BYTES);
        assert_ne!(a, generate_secret());
    }

    #[test]
    fn two_secrets_give_two_signatures_each_verifying() {
        let (old, new) = (generate_secret(), generate_secret());
        let header = signature_header([old.as_str(), new.as_str()], "msg_1", 10, b"{}").unwrap();
        assert_eq!(header.split(' ').count(), 2);
        assert!(verify(&old, "msg_1", 10, b"{}", &header));
        assert!(verify(&new, "msg_1", 10, b"{}", &header));
        assert!(!verify(&generate_secret(), "msg_1", 10, b"{}", &header));
    }

    #[test]
    fn malformed_secrets_are_refused() {
        assert_eq!(secret_key("nope"), Err(InvalidSecret));
        assert_eq!(secret_key("whsec_"), Err(InvalidSecret));
        assert_eq!(secret_key("whsec_!!!"), Err(InvalidSecret));
    }
}
