//! Search terms, as the blind index and the query see them. Text is normalized (NFKC, then
//! lowercased as simple case folding), split into words by Unicode's word boundaries (UAX #29),
//! and runs of CJK characters are cut into overlapping bigrams (a lone character stays a
//! unigram), so Chinese and Japanese text is searchable without a dictionary. Words also index
//! their prefixes of the lengths in `PREFIX_LENGTHS` (3 and 6 characters: at most two extra
//! tokens a word, which bounds the index's growth), for `term*`: a query prefix looks up the
//! longest indexed length it covers.
//! The query's matching rule (`SearchQuery::matches`) is the exact one; the index only narrows the
//! candidates, which are then checked against the opened text.

use std::collections::BTreeSet;

use unicode_normalization::UnicodeNormalization;
use unicode_segmentation::UnicodeSegmentation;

/// Shortest prefix searchable with `*`.
pub const PREFIX_CHARS_MIN: usize = 3;
/// The prefix lengths indexed for each word at least that long; a `term*` looks up the longest
/// of these that it covers, and the candidates are checked against the text.
pub const PREFIX_LENGTHS: [usize; 2] = [3, 6];
/// Words longer than this are indexed by their first `WORD_CHARS_MAX` characters only.
pub const WORD_CHARS_MAX: usize = 64;
/// Terms (words, phrases, prefixes) in one query.
pub const QUERY_TERMS_MAX: usize = 32;
/// Index tokens of one query looked up in the blind index: the rarest drives the scan, the others
/// are point lookups per candidate. A query's further tokens (a long CJK run has one bigram per
/// character) are checked against the opened text only, so results stay exact.
pub const INDEX_TERMS_MAX: usize = 16;
/// Blind tokens one search computes and binds, channels searched × index terms: past it fewer
/// terms are looked up (down to one), and a search over more channels than this is refused. It
/// bounds the statement a search sends (a token is 12 bytes: 96 KiB at most), whatever the
/// number of channels and terms.
pub const SEARCH_TOKENS_MAX: usize = 8_192;
/// Characters of a query.
pub const QUERY_CHARS_MAX: usize = 500;

/// What one index token stands for; the kind is part of the keyed hash, so a word and a prefix
/// with the same letters are different tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TokenKind {
    Word,
    Prefix,
}

impl TokenKind {
    pub fn label(self) -> &'static [u8] {
        match self {
            TokenKind::Word => b"w",
            TokenKind::Prefix => b"p",
        }
    }
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // Hiragana, Katakana
        | 0x3400..=0x4DBF    // CJK Extension A
        | 0x4E00..=0x9FFF    // CJK Unified Ideographs
        | 0xF900..=0xFAFF    // CJK Compatibility Ideographs
        | 0x20000..=0x2FA1F  // CJK Extensions B–F, compatibility supplement
        | 0xAC00..=0xD7AF    // Hangul syllables
    )
}

/// NFKC, then lowercase.
pub fn normalize(text: &str) -> String {
    text.nfkc().collect::<String>().to_lowercase()
}

/// The words of normalized text, in order, with CJK runs already cut into bigrams.
pub fn words(normalized: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut run: Vec<char> = Vec::new();
    let mut run_end = 0usize;
    let flush = |run: &mut Vec<char>, out: &mut Vec<String>| {
        match run.len() {
            0 => {}
            1 => out.push(run[0].to_string()),
            _ => out.extend(run.windows(2).map(|pair| pair.iter().collect::<String>())),
        }
        run.clear();
    };
    for (start, word) in normalized.unicode_word_indices() {
        let all_cjk = word.chars().all(is_cjk);
        if all_cjk {
            if start != run_end {
                flush(&mut run, &mut out);
            }
            run.extend(word.chars());
            run_end = start + word.len();
            continue;
        }
        flush(&mut run, &mut out);
        if word.chars().any(is_cjk) {
            // Mixed word (rare: a CJK character joined to letters): its CJK part as a run, the
            // rest as a word.
            let letters: String = word.chars().filter(|c| !is_cjk(*c)).collect();
            let cjk: Vec<char> = word.chars().filter(|c| is_cjk(*c)).collect();
            run.extend(cjk);
            flush(&mut run, &mut out);
            if !letters.is_empty() {
                out.push(letters.chars().take(WORD_CHARS_MAX).collect());
            }
            continue;
        }
        out.push(word.chars().take(WORD_CHARS_MAX).collect());
    }
    flush(&mut run, &mut out);
    out
}

/// The distinct (kind, term) pairs a message's text is indexed under.
pub fn index_terms(text: &str) -> BTreeSet<(TokenKind, String)> {
    let mut terms = BTreeSet::new();
    for word in words(&normalize(text)) {
        let length = word.chars().count();
        if !word.chars().any(is_cjk) {
            for end in PREFIX_LENGTHS.into_iter().filter(|end| *end <= length) {
                terms.insert((TokenKind::Prefix, word.chars().take(end).collect()));
            }
        }
        terms.insert((TokenKind::Word, word));
    }
    terms
}

/// One term of a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryTerm {
    /// A word (or, for CJK, the bigrams of a run), matched as whole words.
    Words(Vec<String>),
    /// `"…"`: these words, consecutive.
    Phrase(Vec<String>),
    /// `term*`: a word starting with this.
    Prefix(String),
}

/// A parsed query: terms that must all match, and the filters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchQuery {
    pub terms: Vec<QueryTerm>,
    /// `from:@username`.
    pub from: Option<String>,
    /// `in:#channel`.
    pub in_channel: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("The search query is empty.")]
    Empty,
    #[error("The search query is longer than {QUERY_CHARS_MAX} characters.")]
    TooLong,
    #[error("The search query has more than {QUERY_TERMS_MAX} terms.")]
    TooManyTerms,
    #[error("A prefix search needs at least {PREFIX_CHARS_MIN} letters before the *.")]
    PrefixTooShort,
    #[error("A search covers at most {SEARCH_TOKENS_MAX} channels; narrow it with in:#channel or channel_id.")]
    TooManyChannels,
}

impl SearchQuery {
    pub fn parse(text: &str) -> Result<Self, QueryError> {
        if text.chars().count() > QUERY_CHARS_MAX {
            return Err(QueryError::TooLong);
        }
        let mut query = SearchQuery::default();
        let mut rest = text.trim();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('"') {
                let (inside, remaining) = after.split_once('"').unwrap_or((after, ""));
                let phrase = words(&normalize(inside));
                if !phrase.is_empty() {
                    query.terms.push(QueryTerm::Phrase(phrase));
                }
                rest = remaining.trim_start();
                continue;
            }
            let (token, remaining) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            rest = remaining.trim_start();
            if let Some(user) = token.strip_prefix("from:") {
                query.from = Some(user.trim_start_matches('@').to_lowercase());
            } else if let Some(channel) = token.strip_prefix("in:") {
                query.in_channel = Some(channel.trim_start_matches('#').to_lowercase());
            } else if let Some(stem) = token.strip_suffix('*') {
                let stem = normalize(stem);
                if stem.chars().count() < PREFIX_CHARS_MIN || words(&stem).len() != 1 {
                    return Err(QueryError::PrefixTooShort);
                }
                query.terms.push(QueryTerm::Prefix(stem));
            } else {
                let found = words(&normalize(token));
                if !found.is_empty() {
                    query.terms.push(QueryTerm::Words(found));
                }
            }
        }
        if query.terms.is_empty() {
            return Err(QueryError::Empty);
        }
        if query.terms.len() > QUERY_TERMS_MAX {
            return Err(QueryError::TooManyTerms);
        }
        Ok(query)
    }

    /// The index tokens every match must have (each term's, all required).
    pub fn required_tokens(&self) -> BTreeSet<(TokenKind, String)> {
        let mut tokens = BTreeSet::new();
        for term in &self.terms {
            match term {
                QueryTerm::Words(words) | QueryTerm::Phrase(words) => {
                    tokens.extend(words.iter().map(|w| (TokenKind::Word, w.clone())));
                }
                QueryTerm::Prefix(stem) => {
                    let length = stem.chars().count();
                    let indexed = PREFIX_LENGTHS.into_iter().filter(|l| *l <= length).max().unwrap_or(PREFIX_CHARS_MIN);
                    tokens.insert((TokenKind::Prefix, stem.chars().take(indexed).collect()));
                }
            }
        }
        tokens
    }

    /// The index tokens to look up when searching `channels` channels: at most
    /// `INDEX_TERMS_MAX`, and at most `SEARCH_TOKENS_MAX / channels`, taken evenly spread over the
    /// required ones (sorted, so the choice is stable). Err when even one token per channel is
    /// over `SEARCH_TOKENS_MAX`.
    pub fn index_lookup_tokens(&self, channels: usize) -> Result<Vec<(TokenKind, String)>, QueryError> {
        if channels > SEARCH_TOKENS_MAX {
            return Err(QueryError::TooManyChannels);
        }
        let required: Vec<(TokenKind, String)> = self.required_tokens().into_iter().collect();
        let wanted = required.len().min(INDEX_TERMS_MAX).min(SEARCH_TOKENS_MAX / channels.max(1));
        // Strictly increasing indices (wanted <= len), so the chosen tokens are distinct.
        Ok((0..wanted).map(|i| required[i * required.len() / wanted].clone()).collect())
    }

    /// The exact rule: does `text` match every term?
    pub fn matches(&self, text: &str) -> bool {
        let found = words(&normalize(text));
        self.terms.iter().all(|term| match term {
            QueryTerm::Words(wanted) | QueryTerm::Phrase(wanted) => {
                found.windows(wanted.len()).any(|window| window == wanted.as_slice())
            }
            QueryTerm::Prefix(stem) => found.iter().any(|w| w.starts_with(stem.as_str())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_normalized_and_cjk_runs_become_bigrams() {
        assert_eq!(words(&normalize("Ｈｅｌｌｏ, WORLD! It's")), ["hello", "world", "it's"]);
        assert_eq!(words(&normalize("我们搜索中文")), ["我们", "们搜", "搜索", "索中", "中文"]);
        assert_eq!(words(&normalize("東京 and 大阪")), ["東京", "and", "大阪"]);
        assert_eq!(words(&normalize("好")), ["好"]);
        assert_eq!(words(&normalize("カタカナ")), ["カタ", "タカ", "カナ"]);
    }

    #[test]
    fn index_terms_hold_words_and_bounded_prefixes() {
        let terms = index_terms("Deployment ok");
        let prefixes: Vec<_> = terms.iter().filter(|(k, _)| *k == TokenKind::Prefix).map(|(_, t)| t.as_str()).collect();
        assert_eq!(prefixes, ["dep", "deploy"]);
        assert!(terms.contains(&(TokenKind::Word, "ok".to_owned())));
        assert!(!terms.iter().any(|(k, t)| *k == TokenKind::Prefix && t == "ok"));
    }

    #[test]
    fn queries_parse_phrases_prefixes_and_filters() {
        let query = SearchQuery::parse("\"release plan\" deplo* from:@Alice in:#ops budget").expect("parse");
        assert_eq!(
            query.terms,
            [
                QueryTerm::Phrase(vec!["release".into(), "plan".into()]),
                QueryTerm::Prefix("deplo".into()),
                QueryTerm::Words(vec!["budget".into()])
            ]
        );
        assert_eq!(query.from.as_deref(), Some("alice"));
        assert_eq!(query.in_channel.as_deref(), Some("ops"));
        assert_eq!(SearchQuery::parse("   "), Err(QueryError::Empty));
        assert_eq!(SearchQuery::parse("from:@bob"), Err(QueryError::Empty));
        assert_eq!(SearchQuery::parse("de*"), Err(QueryError::PrefixTooShort));
    }

    #[test]
    fn matching_is_exact_for_words_phrases_prefixes_and_cjk() {
        let text = "The release plan is ready; deployment tomorrow. 我们搜索中文";
        for (query, expected) in [
            ("release", true),
            ("releases", false),
            ("\"release plan\"", true),
            ("\"plan release\"", false),
            ("deploy*", true),
            ("deployments*", false),
            ("搜索", true),
            ("中文", true),
            ("文搜", false),
            ("们搜索", true),
            ("READY", true),
        ] {
            assert_eq!(SearchQuery::parse(query).expect(query).matches(text), expected, "{query}");
        }
    }

    #[test]
    fn index_lookups_are_bounded_by_terms_and_by_channels_times_terms() {
        let long_cjk: String = (0..QUERY_CHARS_MAX as u32).map(|i| char::from_u32(0x4E00 + i).expect("cjk")).collect();
        let query = SearchQuery::parse(&long_cjk).expect("parse");
        let required = query.required_tokens();
        assert_eq!(required.len(), QUERY_CHARS_MAX - 1, "one bigram per character but the first");
        let one = query.index_lookup_tokens(1).expect("one channel");
        assert_eq!(one.len(), INDEX_TERMS_MAX);
        assert!(one.iter().all(|t| required.contains(t)));
        assert_eq!(one.iter().collect::<BTreeSet<_>>().len(), one.len(), "distinct");
        assert_eq!(one.first(), required.first());
        assert_eq!(one.last(), required.iter().nth((INDEX_TERMS_MAX - 1) * required.len() / INDEX_TERMS_MAX), "spread");
        for channels in [2, 300, 1_000, SEARCH_TOKENS_MAX] {
            let tokens = query.index_lookup_tokens(channels).expect("bounded");
            assert!(!tokens.is_empty() && tokens.len() * channels <= SEARCH_TOKENS_MAX, "{channels}");
        }
        assert_eq!(query.index_lookup_tokens(SEARCH_TOKENS_MAX + 1), Err(QueryError::TooManyChannels));
        let short = SearchQuery::parse("osprey heron").expect("parse");
        assert_eq!(short.index_lookup_tokens(300).expect("two").len(), 2, "a short query looks up every term");
    }

    #[test]
    fn every_required_token_is_indexed_for_a_matching_text() {
        let text = "Quarterly numbers: 東京オフィス grows";
        for query in ["quarterly", "東京", "オフィ", "grow*", "\"numbers 東京\""] {
            let query = SearchQuery::parse(query).expect("parse");
            assert!(query.matches(text));
            let indexed = index_terms(text);
            assert!(query.required_tokens().is_subset(&indexed), "{query:?}");
        }
    }
}
