//! The use cases' error: a stable code for the client plus, for internal failures, a cause that
//! goes only to the log.

use rampart_core::password_policy::PasswordProblem;
use rampart_core::validate::FieldError;
use rampart_core::ErrorCode;

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
    #[error("internal: {0}")]
    Internal(String),
}

impl AppError {
    pub fn code(&self) -> ErrorCode {
        match self {
            AppError::Invalid(_) => ErrorCode::InvalidInput,
            AppError::WeakPassword(_) => ErrorCode::WeakPassword,
            AppError::InvalidCredentials => ErrorCode::InvalidCredentials,
            AppError::Throttled { .. } | AppError::Busy { .. } | AppError::RateLimited { .. } => {
                ErrorCode::TooManyRequests
            }
            AppError::Conflict(_) => ErrorCode::Conflict,
            AppError::Unauthenticated => ErrorCode::Unauthenticated,
            AppError::Forbidden => ErrorCode::Forbidden,
            AppError::LastOwner => ErrorCode::LastOwner,
            AppError::NotFound => ErrorCode::NotFound,
            AppError::InvalidInvitation => ErrorCode::InvalidInvitation,
            AppError::UsernameTaken => ErrorCode::Conflict,
            AppError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The sentence the client sees: specific where that is safe, generic otherwise.
    pub fn client_message(&self) -> String {
        match self {
            AppError::Invalid(field) => field.message.clone(),
            AppError::WeakPassword(problem) => problem.message(),
            AppError::Throttled { .. } => "Too many failed sign-in attempts; wait before trying again.".to_owned(),
            AppError::Busy { .. } => "The server is busy signing people in; try again in a moment.".to_owned(),
            AppError::UsernameTaken => "That username is taken.".to_owned(),
            AppError::RateLimited { .. } => "You are sending messages too fast; slow down.".to_owned(),
            AppError::Conflict(message) => (*message).to_owned(),
            other => other.code().default_message().to_owned(),
        }
    }

    /// Seconds for `Retry-After`, when the client should come back later.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            AppError::Throttled { retry_after_secs }
            | AppError::Busy { retry_after_secs }
            | AppError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
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
