//! Owns extraction: bytes of one fetched document → entries. One file per source kind; no
//! I/O here, so every extractor is tested on fixtures.

pub mod feed;
pub mod html;
pub mod json;

use crate::item::Entry;

/// Entries of one document and how its bytes were read.
#[derive(Debug, Clone)]
pub struct Extracted {
    pub entries: Vec<Entry>,
    /// Name of the character encoding used to decode the bytes.
    pub encoding: &'static str,
    /// What decided the encoding (content-type, bom, xml-prolog, guess, …).
    pub evidence: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("not a feed: {0}")]
    Feed(String),
    #[error("document is empty")]
    Empty,
    #[error("not JSON: {0}")]
    Json(String),
}
