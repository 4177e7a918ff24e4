//! Stable error codes: what a client may branch on. Each code has one HTTP status (the `http` edge
//! maps it) and one generic sentence; the real cause of an internal error goes only to the log.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A field failed validation (the message names the field).
    InvalidInput,
    /// The body is not JSON, or not the JSON this endpoint takes.
    InvalidJson,
    /// The body has a field this endpoint does not know.
    UnknownField,
    /// No valid session.
    Unauthenticated,
    /// Wrong username or password (never says which).
    InvalidCredentials,
    /// The password is right but a second factor is needed.
    MfaRequired,
    /// The password does not meet the policy.
    WeakPassword,
    /// The invitation is unknown, used or expired (never says which).
    InvalidInvitation,
    /// A name holds an invisible, format, control or direction character.
    InvisibleCharacter,
    /// The caller may not do this.
    Forbidden,
    /// A cookie-authenticated state change without a same-origin `Origin`.
    CrossOriginRequest,
    /// The last owner cannot be demoted or disabled.
    LastOwner,
    /// Not found, or not visible to the caller.
    NotFound,
    /// The method is not allowed on this path.
    MethodNotAllowed,
    /// A unique name is taken.
    Conflict,
    /// A new username could be taken for an existing one (same UTS #39 skeleton).
    UsernameConfusable,
    /// The body is over the limit.
    PayloadTooLarge,
    /// The body has the wrong content type, or a file's type is not accepted.
    UnsupportedMediaType,
    /// The upload would take the user past their storage quota.
    QuotaExceeded,
    /// The malware scanner found something in the file; it was not stored.
    MalwareDetected,
    /// The `Range` asked for lies outside the file.
    RangeNotSatisfiable,
    /// The request head (headers) is over the limit.
    HeadersTooLarge,
    /// Throttled, locked, or rate-limited; `Retry-After` says when to come back.
    TooManyRequests,
    /// The request took too long.
    RequestTimeout,
    /// The plain-HTTP listener refuses API requests.
    HttpsRequired,
    /// The server cannot serve now (starting, draining, store down).
    Unavailable,
    /// Something failed on our side; the log has the cause under the request id.
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::UnknownField => "unknown_field",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::InvalidCredentials => "invalid_credentials",
            ErrorCode::MfaRequired => "mfa_required",
            ErrorCode::WeakPassword => "weak_password",
            ErrorCode::InvalidInvitation => "invalid_invitation",
            ErrorCode::InvisibleCharacter => "invisible_character",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::CrossOriginRequest => "cross_origin_request",
            ErrorCode::LastOwner => "last_owner",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::UsernameConfusable => "username_confusable",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::MalwareDetected => "malware_detected",
            ErrorCode::RangeNotSatisfiable => "range_not_satisfiable",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::HttpsRequired => "https_required",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status for this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidInput
            | ErrorCode::InvalidJson
            | ErrorCode::UnknownField
            | ErrorCode::WeakPassword
            | ErrorCode::InvalidInvitation
            | ErrorCode::InvisibleCharacter
            | ErrorCode::HttpsRequired => 400,
            ErrorCode::Unauthenticated | ErrorCode::InvalidCredentials | ErrorCode::MfaRequired => 401,
            ErrorCode::Forbidden | ErrorCode::CrossOriginRequest | ErrorCode::LastOwner => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::Conflict | ErrorCode::UsernameConfusable => 409,
            ErrorCode::PayloadTooLarge | ErrorCode::QuotaExceeded => 413,
            ErrorCode::RangeNotSatisfiable => 416,
            ErrorCode::MalwareDetected => 422,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::HeadersTooLarge => 431,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
        }
    }

    /// The generic sentence for this code, used when nothing more specific (and safe) is known.
    pub fn default_message(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "The request has an invalid value.",
            ErrorCode::InvalidJson => "The request body is not valid JSON for this endpoint.",
            ErrorCode::UnknownField => "The request body has a field this endpoint does not accept.",
            ErrorCode::Unauthenticated => "You are not signed in, or your session has ended.",
            ErrorCode::InvalidCredentials => "The username or password is incorrect.",
            ErrorCode::MfaRequired => "A second factor is required to sign in.",
            ErrorCode::WeakPassword => "The password does not meet the password policy.",
            ErrorCode::InvalidInvitation => "The invitation is invalid, used or expired.",
            ErrorCode::InvisibleCharacter => {
                "A name must not contain invisible, format, control or direction characters."
            }
            ErrorCode::Forbidden => "You are not allowed to do this.",
            ErrorCode::CrossOriginRequest => "This request must come from the Rampart web client's own origin.",
            ErrorCode::LastOwner => "The last owner cannot be demoted or disabled.",
            ErrorCode::NotFound => "Not found.",
            ErrorCode::MethodNotAllowed => "This method is not allowed here.",
            ErrorCode::Conflict => "That conflicts with something that already exists.",
            ErrorCode::UsernameConfusable => "That username looks like an existing one; choose another.",
            ErrorCode::PayloadTooLarge => "The request body is too large.",
            ErrorCode::UnsupportedMediaType => "The request body must be application/json.",
            ErrorCode::QuotaExceeded => "This upload would exceed your file storage quota.",
            ErrorCode::MalwareDetected => "The file was refused: the malware scanner found a threat in it.",
            ErrorCode::RangeNotSatisfiable => "The requested range lies outside the file.",
            ErrorCode::HeadersTooLarge => "The request headers are too many or too large.",
            ErrorCode::TooManyRequests => "Too many requests; try again later.",
            ErrorCode::RequestTimeout => "The request took too long.",
            ErrorCode::HttpsRequired => "The API is served over HTTPS only.",
            ErrorCode::Unavailable => "The server cannot serve this request right now.",
            ErrorCode::Internal => "Something went wrong on our side.",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_is_a_client_or_server_error() {
        let all =
            [ErrorCode::InvalidInput, ErrorCode::Unauthenticated, ErrorCode::TooManyRequests, ErrorCode::Internal];
        for code in all {
            assert!((400..600).contains(&code.http_status()));
            assert!(code.default_message().ends_with('.'));
        }
    }
}
