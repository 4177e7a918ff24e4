//! Checking an audit log, apart from how it is stored: fed the records in `seq` order and the
//! checkpoints, it recomputes the hash chain and names the first record that is not what was
//! written — modified, missing, inserted, reordered, or cut from the tail — whatever the backend.

use rampart_core::audit::{encode, RecordFields};
use rampart_crypto::audit_chain::{link, ChainHash, GENESIS};
use rampart_crypto::AuditVerifier;

use crate::audit::Checkpoint;

/// What is wrong at the first bad record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyProblem {
    /// A record's stored hash is not the hash of its contents and the previous record's hash:
    /// it was changed, inserted, or moved.
    HashMismatch,
    /// A `seq` is missing: the record was deleted.
    Missing,
    /// A signed checkpoint names a hash the recomputed chain does not reach: records up to it
    /// were rewritten together with their hashes.
    CheckpointMismatch,
    /// A checkpoint's signature does not verify.
    BadSignature,
    /// The log ends before a checkpoint's (or the running server's) last `seq`: its tail was cut.
    Truncated,
}

impl VerifyProblem {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HashMismatch => "hash_mismatch",
            Self::Missing => "missing",
            Self::CheckpointMismatch => "checkpoint_mismatch",
            Self::BadSignature => "bad_signature",
            Self::Truncated => "truncated",
        }
    }

    pub fn sentence(self) -> &'static str {
        match self {
            Self::HashMismatch => "the record was changed, inserted or moved",
            Self::Missing => "the record was deleted",
            Self::CheckpointMismatch => "records up to a signed checkpoint were rewritten",
            Self::BadSignature => "a checkpoint's signature does not verify",
            Self::Truncated => "the log's tail was cut",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub ok: bool,
    /// Records whose hash was recomputed and matched.
    pub checked: u64,
    pub first_bad_seq: Option<i64>,
    pub problem: Option<VerifyProblem>,
    pub checkpoints: u64,
    pub last_checkpoint_seq: Option<i64>,
    /// The last `seq` verified in order (the log's last one when it is intact).
    pub head_seq: i64,
}

impl VerifyReport {
    pub fn summary(&self) -> String {
        match (self.first_bad_seq, self.problem) {
            (Some(seq), Some(problem)) => {
                format!(
                    "audit log NOT intact: first bad record seq {seq}: {} ({})",
                    problem.sentence(),
                    problem.as_str()
                )
            }
            _ => format!(
                "audit log intact: {} records, {} signed checkpoints (last at seq {})",
                self.checked,
                self.checkpoints,
                self.last_checkpoint_seq.map_or_else(|| "none".to_owned(), |s| s.to_string())
            ),
        }
    }
}

/// Walks the chain record by record.
#[derive(Debug)]
pub struct ChainWalk {
    previous: ChainHash,
    expected_seq: i64,
    checked: u64,
    checkpoints: Vec<Checkpoint>,
    next_checkpoint: usize,
    failure: Option<(i64, VerifyProblem)>,
    /// The seq after the last checkpoint that matched: where a rewrite could have begun.
    anchored_after: i64,
}

impl ChainWalk {
    /// `checkpoints` from the database and from any copy kept elsewhere; each must carry a valid
    /// signature when a verifier is given.
    pub fn new(mut checkpoints: Vec<Checkpoint>, verifier: Option<&AuditVerifier>) -> Self {
        checkpoints.sort_by_key(|c| c.seq);
        checkpoints.dedup_by(|a, b| a.seq == b.seq && a.hash == b.hash);
        let mut failure = None;
        if let Some(verifier) = verifier {
            if let Some(bad) =
                checkpoints.iter().find(|c| !verifier.verify_checkpoint(c.seq, &c.hash, c.at.0, &c.signature))
            {
                failure = Some((bad.seq, VerifyProblem::BadSignature));
            }
        }
        ChainWalk {
            previous: GENESIS,
            expected_seq: 1,
            checked: 0,
            checkpoints,
            next_checkpoint: 0,
            failure,
            anchored_after: 0,
        }
    }

    pub fn failed(&self) -> bool {
        self.failure.is_some()
    }

    /// Feeds the next record (in `seq` order) with its stored hash; false once a problem is found.
    pub fn push(&mut self, record: &RecordFields<'_>, stored_hash: Option<&[u8]>) -> bool {
        if self.failure.is_some() {
            return false;
        }
        if record.seq != self.expected_seq {
            self.failure = Some((self.expected_seq, VerifyProblem::Missing));
            return false;
        }
        let hash = link(&self.previous, &encode(record));
        if stored_hash != Some(hash.as_slice()) {
            self.failure = Some((record.seq, VerifyProblem::HashMismatch));
            return false;
        }
        while let Some(checkpoint) = self.checkpoints.get(self.next_checkpoint) {
            if checkpoint.seq > record.seq {
                break;
            }
            if checkpoint.seq == record.seq && checkpoint.hash != hash {
                self.failure = Some((self.anchored_after + 1, VerifyProblem::CheckpointMismatch));
                return false;
            }
            self.anchored_after = record.seq;
            self.next_checkpoint += 1;
        }
        self.previous = hash;
        self.expected_seq += 1;
        self.checked += 1;
        true
    }

    /// The verdict once every record was fed; `expected_head` is the last seq the running server
    /// wrote, when known.
    pub fn finish(mut self, expected_head: Option<i64>) -> VerifyReport {
        let head_seq = self.expected_seq - 1;
        if self.failure.is_none() {
            let promised = self.checkpoints.last().map(|c| c.seq).into_iter().chain(expected_head).max();
            if promised.is_some_and(|seq| seq > head_seq) {
                self.failure = Some((head_seq + 1, VerifyProblem::Truncated));
            }
        }
        VerifyReport {
            ok: self.failure.is_none(),
            checked: self.checked,
            first_bad_seq: self.failure.map(|f| f.0),
            problem: self.failure.map(|f| f.1),
            checkpoints: self.checkpoints.len() as u64,
            last_checkpoint_seq: self.checkpoints.last().map(|c| c.seq),
            head_seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use rampart_core::Timestamp;
    use rampart_crypto::AuditSigner;

    use super::*;

    /// A log of `n` records as stored: (fields, hash), with the hash chain intact.
    fn log(n: i64) -> Vec<(i64, String, ChainHash)> {
        let mut previous = GENESIS;
        (1..=n)
            .map(|seq| {
                let actor = format!("user-{seq}");
                let hash = link(&previous, &encode(&fields(seq, &actor)));
                previous = hash;
                (seq, actor, hash)
            })
            .collect()
    }

    fn fields(seq: i64, actor: &str) -> RecordFields<'_> {
        RecordFields {
            seq,
            at_ms: 1_000 + seq,
            actor,
            action: "auth.login",
            target: None,
            ip: Some("127.0.0.1"),
            user_agent: None,
            outcome: "success",
            details: "{}",
        }
    }

    fn signer() -> (tempfile::TempDir, AuditSigner) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let signer = AuditSigner::load_or_create(dir.path()).expect("signer");
        (dir, signer)
    }

    fn checkpoint(signer: &AuditSigner, seq: i64, hash: ChainHash) -> Checkpoint {
        let at = Timestamp(5_000);
        Checkpoint { seq, hash, at, signature: signer.sign_checkpoint(seq, &hash, at.0).to_vec() }
    }

    fn walk(rows: &[(i64, String, ChainHash)], checkpoints: Vec<Checkpoint>, signer: &AuditSigner) -> VerifyReport {
        let verifier = signer.verifier();
        let mut walk = ChainWalk::new(checkpoints, Some(&verifier));
        for (seq, actor, hash) in rows {
            if !walk.push(&fields(*seq, actor), Some(hash.as_slice())) {
                break;
            }
        }
        walk.finish(None)
    }

    fn verdict(report: &VerifyReport) -> Option<(i64, VerifyProblem)> {
        report.first_bad_seq.zip(report.problem)
    }

    #[test]
    fn an_untouched_log_verifies() {
        let (_dir, signer) = signer();
        let rows = log(10);
        let report = walk(&rows, vec![checkpoint(&signer, 10, rows[9].2)], &signer);
        assert!(report.ok, "{report:?}");
        assert_eq!(report.checked, 10);
        assert_eq!(report.last_checkpoint_seq, Some(10));
    }

    #[test]
    fn each_kind_of_tampering_names_the_first_bad_seq() {
        let (_dir, signer) = signer();
        let rows = log(10);
        let signed = || vec![checkpoint(&signer, 8, rows[7].2)];

        let mut changed = rows.clone();
        changed[3].1 = "mallory".to_owned();
        assert_eq!(verdict(&walk(&changed, signed(), &signer)), Some((4, VerifyProblem::HashMismatch)));

        let mut deleted = rows.clone();
        deleted.remove(5);
        assert_eq!(verdict(&walk(&deleted, signed(), &signer)), Some((6, VerifyProblem::Missing)));

        let mut swapped = rows.clone();
        let (a, b) = (swapped[2].1.clone(), swapped[3].1.clone());
        swapped[2].1 = b;
        swapped[3].1 = a;
        assert_eq!(verdict(&walk(&swapped, signed(), &signer)), Some((3, VerifyProblem::HashMismatch)));

        let mut inserted = rows.clone();
        inserted.push((11, "ghost".to_owned(), [7; 32]));
        assert_eq!(verdict(&walk(&inserted, signed(), &signer)), Some((11, VerifyProblem::HashMismatch)));

        let cut = rows[..6].to_vec();
        assert_eq!(verdict(&walk(&cut, signed(), &signer)), Some((7, VerifyProblem::Truncated)));

        // Rewritten with fresh hashes: only the signed checkpoint catches it, from the start of
        // the unanchored stretch.
        let mut rewritten = Vec::new();
        let mut previous = GENESIS;
        for (seq, actor, _) in &rows {
            let actor = if *seq == 5 { "mallory".to_owned() } else { actor.clone() };
            let hash = link(&previous, &encode(&fields(*seq, &actor)));
            previous = hash;
            rewritten.push((*seq, actor, hash));
        }
        let anchored = vec![checkpoint(&signer, 2, rows[1].2), checkpoint(&signer, 8, rows[7].2)];
        assert_eq!(verdict(&walk(&rewritten, anchored, &signer)), Some((3, VerifyProblem::CheckpointMismatch)));

        let mut forged = signed();
        forged[0].signature[0] ^= 1;
        assert_eq!(verdict(&walk(&rows, forged, &signer)), Some((8, VerifyProblem::BadSignature)));
    }

    #[test]
    fn a_tail_cut_while_running_is_caught_by_the_servers_own_count() {
        let (_dir, signer) = signer();
        let rows = log(5);
        let verifier = signer.verifier();
        let mut walk = ChainWalk::new(Vec::new(), Some(&verifier));
        for (seq, actor, hash) in &rows[..3] {
            walk.push(&fields(*seq, actor), Some(hash.as_slice()));
        }
        assert_eq!(verdict(&walk.finish(Some(5))), Some((4, VerifyProblem::Truncated)));
    }
}
