//! The use cases' error: a stable code for the client plus, for internal failures, a cause that
//! goes only to the log.

use rampart_core::password_policy::PasswordProblem;
use rampart_core::validate::FieldError;
use rampart_core::ErrorCode;

/// When a client refused for a busy or unavailable upload path should try again.
const UPLOAD_RETRY_AFTER_SECS: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("invalid {}: {}", .0.field, .0.message)]
    Invalid(FieldError),
    #[error("weak password")]
    WeakPassword(PasswordProblem),
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("throttled")]
    Throttled { retry_after_secs: u64 },
    /// The client's address spent its budget of unauthenticated requests.
    #[error("address budget spent")]
    AddressBudget { retry_after_secs: u64 },
    #[error("send rate limit")]
    RateLimited { retry_after_secs: u64 },
    #[error("conflict")]
    Conflict(&'static str),
    #[error("password hashing queue full")]
    Busy { retry_after_secs: u64 },
    #[error("not authenticated")]
    Unauthenticated,
    #[error("forbidden")]
    Forbidden,
    #[error("last owner")]
    LastOwner,
    #[error("not found")]
    NotFound,
    #[error("invalid invitation")]
    InvalidInvitation,
    #[error("username taken")]
    UsernameTaken,
    /// The username could be taken for an existing one (same skeleton).
    #[error("username confusable")]
    UsernameConfusable,
    /// A file's type is refused (the sentence says why, naming types only).
    #[error("file type refused")]
    FileType(String),
    /// An upload or an image is over a size limit (the sentence names the limit).
    #[error("too large")]
    TooLarge(String),
    #[error("file quota exceeded")]
    QuotaExceeded,
    #[error("malware detected")]
    MalwareDetected,
    /// Scanning is on but the scanner cannot give a verdict: uploads are refused (fail closed).
    #[error("malware scanner unavailable: {0}")]
    ScanUnavailable(String),
    /// The upload stopped sending.
    #[error("upload stalled")]
    UploadStalled,
    /// The upload sent slower than the minimum rate.
    #[error("upload too slow")]
    UploadTooSlow { bytes_per_sec_min: u64 },
    /// The user has as many uploads in progress as one user may.
    #[error("user's uploads busy")]
    UserUploadsBusy { max: usize },
    /// As many uploads as the server takes at once are in progress.
    #[error("uploads busy")]
    UploadsBusy,
    #[error("internal: {0}")]
    Internal(String),
}

impl AppError {
    pub fn code(&self) -> ErrorCode {
        match self {
            AppError::Invalid(field) => field.code,
            AppError::WeakPassword(_) => ErrorCode::WeakPassword,
            AppError::InvalidCredentials => ErrorCode::InvalidCredentials,
            AppError::Throttled { .. }
            | AppError::AddressBudget { .. }
            | AppError::Busy { .. }
            | AppError::RateLimited { .. } => ErrorCode::TooManyRequests,
            AppError::Conflict(_) => ErrorCode::Conflict,
            AppError::Unauthenticated => ErrorCode::Unauthenticated,
            AppError::Forbidden => ErrorCode::Forbidden,
            AppError::LastOwner => ErrorCode::LastOwner,
            AppError::NotFound => ErrorCode::NotFound,
            AppError::InvalidInvitation => ErrorCode::InvalidInvitation,
            AppError::UsernameTaken => ErrorCode::Conflict,
            AppError::UsernameConfusable => ErrorCode::UsernameConfusable,
            AppError::FileType(_) => ErrorCode::UnsupportedMediaType,
            AppError::TooLarge(_) => ErrorCode::PayloadTooLarge,
            AppError::QuotaExceeded => ErrorCode::QuotaExceeded,
            AppError::MalwareDetected => ErrorCode::MalwareDetected,
            AppError::ScanUnavailable(_) => ErrorCode::Unavailable,
            AppError::UploadStalled | AppError::UploadTooSlow { .. } => ErrorCode::RequestTimeout,
            AppError::UploadsBusy | AppError::UserUploadsBusy { .. } => ErrorCode::TooManyRequests,
            AppError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The sentence the client sees: specific where that is safe, generic otherwise.
    pub fn client_message(&self) -> String {
        match self {
            AppError::Invalid(field) => field.message.clone(),
            AppError::WeakPassword(problem) => problem.message(),
            AppError::Throttled { .. } => "Too many failed sign-in attempts; wait before trying again.".to_owned(),
            AppError::AddressBudget { .. } => {
                "Too many requests from your address; wait before trying again.".to_owned()
            }
            AppError::Busy { .. } => "The server is busy signing people in; try again in a moment.".to_owned(),
            AppError::UsernameTaken => "That username is taken.".to_owned(),
            AppError::RateLimited { .. } => "You are sending messages too fast; slow down.".to_owned(),
            AppError::Conflict(message) => (*message).to_owned(),
            AppError::FileType(message) | AppError::TooLarge(message) => message.clone(),
            AppError::ScanUnavailable(_) => {
                "Files cannot be accepted right now: the malware scanner is unavailable.".to_owned()
            }
            AppError::UploadStalled => "The upload stopped sending data.".to_owned(),
            AppError::UploadsBusy => "The server is receiving many files; try again in a moment.".to_owned(),
            AppError::UploadTooSlow { bytes_per_sec_min } => {
                format!("The upload was slower than {bytes_per_sec_min} bytes per second, so it was stopped.")
            }
            AppError::UserUploadsBusy { max } => {
                format!("You have {max} uploads in progress, as many as one person may; wait for one to finish.")
            }
            other => other.code().default_message().to_owned(),
        }
    }

    /// Seconds for `Retry-After`, when the client should come back later.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            AppError::Throttled { retry_after_secs }
            | AppError::AddressBudget { retry_after_secs }
            | AppError::Busy { retry_after_secs }
            | AppError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            AppError::UploadsBusy | AppError::UserUploadsBusy { .. } | AppError::ScanUnavailable(_) => {
                Some(UPLOAD_RETRY_AFTER_SECS)
            }
            _ => None,
        }
    }
}

impl From<rampart_store::StoreError> for AppError {
    fn from(error: rampart_store::StoreError) -> Self {
        // The Debug form keeps sqlx's cause for the log; it never reaches a client.
        AppError::Internal(format!("store: {error:?}"))
    }
}

impl From<FieldError> for AppError {
    fn from(error: FieldError) -> Self {
        AppError::Invalid(error)
    }
}
