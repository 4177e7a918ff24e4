//! The blind tokens of one search, planned once for both backends: which index tokens the query
//! looks up (`SearchQuery::index_lookup_tokens`: channels × terms at most `SEARCH_TOKENS_MAX`) and
//! each searched channel's token for each of them (a term's token differs per channel, since each
//! channel has its own search key), in one channel-major list that a backend binds as a single
//! value — a blob on SQLite, a `bytea[]` on PostgreSQL. A statement's bound values are so a
//! handful whatever the number of channels and terms, where one token list per channel repeated
//! in every channel's subquery once made them channels² × terms.

use std::sync::Arc;

use rampart_core::search::TokenKind;
use rampart_crypto::blind::{token, TOKEN_BYTES};
use rampart_crypto::DataKey;

/// The tokens one search looks up: channel `c`'s token of term `t` is at `c * terms + t`, and,
/// after `rarest_first`, term 0 is the one with the fewest postings (it drives the scan).
#[derive(Debug)]
pub(crate) struct SearchTokens {
    channels: usize,
    terms: usize,
    tokens: Vec<[u8; TOKEN_BYTES]>,
}

impl SearchTokens {
    /// The tokens of `terms` under each of `keys` (the searched channels' active search keys).
    pub fn new(terms: &[(TokenKind, String)], keys: &[Arc<DataKey>]) -> Self {
        let mut tokens = Vec::with_capacity(terms.len() * keys.len());
        for key in keys {
            tokens.extend(terms.iter().map(|(kind, text)| token(key, kind.label(), text)));
        }
        let channels = if terms.is_empty() { 0 } else { keys.len() };
        Self { channels, terms: terms.len(), tokens }
    }

    /// True when there is nothing to look up (no channel with a key, or no term).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Channels searched.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Tokens per channel.
    pub fn terms(&self) -> usize {
        self.terms
    }

    /// Puts each channel's terms in the order of `postings` (one count per term), fewest first;
    /// equal counts keep their order.
    pub fn rarest_first(&mut self, postings: &[u64]) {
        debug_assert_eq!(postings.len(), self.terms);
        let mut order: Vec<usize> = (0..self.terms).collect();
        order.sort_by_key(|term| postings.get(*term).copied().unwrap_or(u64::MAX));
        for channel in self.tokens.chunks_exact_mut(self.terms.max(1)) {
            let before = channel.to_vec();
            for (slot, term) in channel.iter_mut().zip(&order) {
                *slot = before[*term];
            }
        }
    }

    /// The tokens end to end, for SQLite's `substr(?, offset, TOKEN_BYTES)`.
    pub fn blob(&self) -> Vec<u8> {
        self.tokens.concat()
    }

    /// The tokens as a list, for PostgreSQL's `bytea[]`.
    pub fn list(&self) -> Vec<Vec<u8>> {
        self.tokens.iter().map(|t| t.to_vec()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_channel_major_and_reordered_per_channel() {
        let keys: Vec<Arc<DataKey>> = (0..3).map(|_| Arc::new(DataKey::generate())).collect();
        let terms: Vec<(TokenKind, String)> =
            ["osprey", "heron", "egret"].iter().map(|t| (TokenKind::Word, (*t).to_owned())).collect();
        let mut tokens = SearchTokens::new(&terms, &keys);
        assert_eq!((tokens.channels(), tokens.terms()), (3, 3));
        let at = |c: usize, t: usize| token(&keys[c], b"w", &terms[t].1);
        assert_eq!(tokens.list()[4], at(1, 1).to_vec());
        tokens.rarest_first(&[50, 7, 50]);
        let list = tokens.list();
        for channel in 0..3 {
            assert_eq!(
                list[channel * 3..channel * 3 + 3],
                [at(channel, 1).to_vec(), at(channel, 0).to_vec(), at(channel, 2).to_vec()]
            );
        }
        assert_eq!(tokens.blob().len(), 9 * TOKEN_BYTES);
        assert!(SearchTokens::new(&[], &keys).is_empty());
        assert!(SearchTokens::new(&terms, &[]).is_empty());
    }
}
