//! A bounded pool for Argon2id: at most `workers` hashes run at once (on tokio's blocking threads,
//! never on the async workers), and at most `queue_max` wait. Past that, a request is refused at
//! once with "busy", so a login flood costs the server a fixed amount of CPU and memory and leaves
//! the async runtime free for message traffic.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rampart_crypto::password::PasswordError;
use rampart_crypto::{PasswordHasher, PasswordParams, SecretString};
use tokio::sync::Semaphore;

use crate::AppError;

/// How long a refused client is told to wait.
const BUSY_RETRY_AFTER_SECS: u64 = 1;

#[derive(Clone, Debug)]
pub struct HashPool {
    hasher: PasswordHasher,
    running: Arc<Semaphore>,
    admitted: Arc<AtomicUsize>,
    admitted_max: usize,
}

/// Releases a place in the queue however the job ends.
struct Admission(Arc<AtomicUsize>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HashPool {
    pub fn new(params: PasswordParams, workers: usize, queue_max: usize) -> Result<Self, AppError> {
        let hasher = PasswordHasher::new(params).map_err(|e| AppError::Internal(e.to_string()))?;
        let workers = workers.max(1);
        Ok(Self {
            hasher,
            running: Arc::new(Semaphore::new(workers)),
            admitted: Arc::new(AtomicUsize::new(0)),
            admitted_max: workers + queue_max,
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&PasswordHasher) -> T + Send + 'static,
    ) -> Result<T, AppError> {
        if self.admitted.fetch_add(1, Ordering::AcqRel) >= self.admitted_max {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
            return Err(AppError::Busy { retry_after_secs: BUSY_RETRY_AFTER_SECS });
        }
        let _admission = Admission(self.admitted.clone());
        let _permit = self.running.acquire().await.map_err(|_| AppError::Internal("hash pool closed".into()))?;
        let hasher = self.hasher.clone();
        tokio::task::spawn_blocking(move || job(&hasher))
            .await
            .map_err(|e| AppError::Internal(format!("hash task: {e}")))
    }

    /// A PHC hash of a new password.
    pub async fn hash(&self, password: SecretString) -> Result<String, AppError> {
        self.run(move |hasher| hasher.hash(&password))
            .await?
            .map_err(|e: PasswordError| AppError::Internal(e.to_string()))
    }

    /// Verifies against `stored`, or against a dummy hash when there is no account, so both take
    /// the same time.
    pub async fn verify(&self, password: SecretString, stored: Option<String>) -> Result<bool, AppError> {
        self.run(move |hasher| match stored {
            Some(hash) => hasher.verify(&password, &hash),
            None => {
                hasher.verify_dummy(&password);
                false
            }
        })
        .await
    }
}
