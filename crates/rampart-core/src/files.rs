//! What a shared file may be: the catalogue of types Rampart knows, the type policy (decided by
//! content — magic bytes through `infer` — which must agree with the name's extension, and be on
//! the configured allowlist), and file-name sanitizing. Pure: it sees only the bytes it is given.

use std::fmt;

use unicode_normalization::UnicodeNormalization;

use crate::limits::FILE_NAME_CHARS_MAX;
use crate::validate::FieldError;

/// Every type a file may be stored as. Executables, scripts and HTML are not here at all, so no
/// configuration can allow them; SVG is here but off by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    Png,
    Jpeg,
    Gif,
    Webp,
    Svg,
    Pdf,
    Text,
    Csv,
    Docx,
    Xlsx,
    Pptx,
    Doc,
    Xls,
    Ppt,
    Odt,
    Ods,
    Odp,
    Zip,
    Gzip,
    Tar,
    SevenZip,
    Bzip2,
    Xz,
}

/// Every kind, in the order of `FileKind`.
pub const ALL_FILE_KINDS: [FileKind; 23] = [
    FileKind::Png,
    FileKind::Jpeg,
    FileKind::Gif,
    FileKind::Webp,
    FileKind::Svg,
    FileKind::Pdf,
    FileKind::Text,
    FileKind::Csv,
    FileKind::Docx,
    FileKind::Xlsx,
    FileKind::Pptx,
    FileKind::Doc,
    FileKind::Xls,
    FileKind::Ppt,
    FileKind::Odt,
    FileKind::Ods,
    FileKind::Odp,
    FileKind::Zip,
    FileKind::Gzip,
    FileKind::Tar,
    FileKind::SevenZip,
    FileKind::Bzip2,
    FileKind::Xz,
];

impl FileKind {
    /// The media type: the name used in the config's allowlist, and what a download is served as.
    pub fn media_type(self) -> &'static str {
        match self {
            FileKind::Png => "image/png",
            FileKind::Jpeg => "image/jpeg",
            FileKind::Gif => "image/gif",
            FileKind::Webp => "image/webp",
            FileKind::Svg => "image/svg+xml",
            FileKind::Pdf => "application/pdf",
            FileKind::Text => "text/plain",
            FileKind::Csv => "text/csv",
            FileKind::Docx => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            FileKind::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            FileKind::Pptx => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            FileKind::Doc => "application/msword",
            FileKind::Xls => "application/vnd.ms-excel",
            FileKind::Ppt => "application/vnd.ms-powerpoint",
            FileKind::Odt => "application/vnd.oasis.opendocument.text",
            FileKind::Ods => "application/vnd.oasis.opendocument.spreadsheet",
            FileKind::Odp => "application/vnd.oasis.opendocument.presentation",
            FileKind::Zip => "application/zip",
            FileKind::Gzip => "application/gzip",
            FileKind::Tar => "application/x-tar",
            FileKind::SevenZip => "application/x-7z-compressed",
            FileKind::Bzip2 => "application/x-bzip2",
            FileKind::Xz => "application/x-xz",
        }
    }

    /// The `Content-Type` a download carries (text gets its charset).
    pub fn content_type(self) -> &'static str {
        match self {
            FileKind::Text => "text/plain; charset=utf-8",
            FileKind::Csv => "text/csv; charset=utf-8",
            other => other.media_type(),
        }
    }

    /// The extensions (lower case, no dot) a file of this kind may be named with.
    pub fn extensions(self) -> &'static [&'static str] {
        match self {
            FileKind::Png => &["png"],
            FileKind::Jpeg => &["jpg", "jpeg"],
            FileKind::Gif => &["gif"],
            FileKind::Webp => &["webp"],
            FileKind::Svg => &["svg"],
            FileKind::Pdf => &["pdf"],
            FileKind::Text => &["txt", "text", "log", "md", "markdown"],
            FileKind::Csv => &["csv", "tsv"],
            FileKind::Docx => &["docx"],
            FileKind::Xlsx => &["xlsx"],
            FileKind::Pptx => &["pptx"],
            FileKind::Doc => &["doc"],
            FileKind::Xls => &["xls"],
            FileKind::Ppt => &["ppt"],
            FileKind::Odt => &["odt"],
            FileKind::Ods => &["ods"],
            FileKind::Odp => &["odp"],
            FileKind::Zip => &["zip"],
            FileKind::Gzip => &["gz", "tgz"],
            FileKind::Tar => &["tar"],
            FileKind::SevenZip => &["7z"],
            FileKind::Bzip2 => &["bz2", "tbz2"],
            FileKind::Xz => &["xz", "txz"],
        }
    }

    /// Raster images that are decoded and re-encoded (dropping their metadata) when that is on.
    pub fn is_raster_image(self) -> bool {
        matches!(self, FileKind::Png | FileKind::Jpeg | FileKind::Gif | FileKind::Webp)
    }

    /// The kind whose media type is `text`, if any.
    pub fn from_media_type(text: &str) -> Option<FileKind> {
        let text = text.split(';').next().unwrap_or("").trim();
        ALL_FILE_KINDS.into_iter().find(|kind| kind.media_type().eq_ignore_ascii_case(text))
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.media_type())
    }
}

/// The kinds allowed by default: everything in the catalogue except SVG (it can carry script).
pub fn default_allowed_kinds() -> Vec<FileKind> {
    ALL_FILE_KINDS.into_iter().filter(|kind| *kind != FileKind::Svg).collect()
}

/// Why a file's type was refused. Each maps to 415 with its own sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeRefusal {
    /// A program: an executable, library, bytecode or script.
    Executable,
    /// HTML, XHTML or XML markup a browser could render.
    Markup,
    /// SVG while SVG is not allowed.
    Svg,
    /// A type Rampart recognizes but that is not on the allowlist (the detected media type).
    NotAllowed(&'static str),
    /// Binary content of no recognized type.
    Unrecognized,
    /// The name has no extension.
    NoExtension,
    /// The name's extension does not match the content (a polyglot, or a mislabeled file).
    ExtensionMismatch { detected: FileKind },
}

impl TypeRefusal {
    /// The sentence for the client: it names types, never the file's content.
    pub fn message(&self) -> String {
        match self {
            TypeRefusal::Executable => "Programs and scripts cannot be shared as files.".to_owned(),
            TypeRefusal::Markup => "HTML and XML documents cannot be shared as files.".to_owned(),
            TypeRefusal::Svg => "SVG images are not accepted on this server.".to_owned(),
            TypeRefusal::NotAllowed(media_type) => format!("Files of type {media_type} are not accepted."),
            TypeRefusal::Unrecognized => "The file's type was not recognized, so it is not accepted.".to_owned(),
            TypeRefusal::NoExtension => "The file name must end in an extension that matches its type.".to_owned(),
            TypeRefusal::ExtensionMismatch { detected } => format!(
                "The file's content is {} but its name says otherwise; name it .{}.",
                detected.media_type(),
                detected.extensions()[0]
            ),
        }
    }
}

/// Which kinds are accepted: the allowlist, already validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypePolicy {
    allowed: Vec<FileKind>,
}

impl Default for TypePolicy {
    fn default() -> Self {
        Self { allowed: default_allowed_kinds() }
    }
}

impl TypePolicy {
    pub fn new(allowed: Vec<FileKind>) -> Self {
        Self { allowed }
    }

    pub fn allows(&self, kind: FileKind) -> bool {
        self.allowed.contains(&kind)
    }

    pub fn allowed(&self) -> &[FileKind] {
        &self.allowed
    }

    /// Decides the type of a file from the first bytes of its content (`head`: at least
    /// `FILE_SNIFF_BYTES`, or the whole file if shorter) and its sanitized name: the content
    /// decides, the extension must agree, and the kind must be allowed.
    pub fn classify(&self, head: &[u8], name: &FileName) -> Result<FileKind, TypeRefusal> {
        let mut detected = detect(head)?;
        let extension = name.extension();
        // Plain text named as comma- or tab-separated values is served as such.
        if detected == FileKind::Text && extension.as_deref().is_some_and(|e| FileKind::Csv.extensions().contains(&e)) {
            detected = FileKind::Csv;
        }
        if detected == FileKind::Svg && !self.allows(FileKind::Svg) {
            return Err(TypeRefusal::Svg);
        }
        if !self.allows(detected) {
            return Err(TypeRefusal::NotAllowed(detected.media_type()));
        }
        let extension = extension.ok_or(TypeRefusal::NoExtension)?;
        if !detected.extensions().contains(&extension.as_str()) {
            return Err(TypeRefusal::ExtensionMismatch { detected });
        }
        Ok(detected)
    }
}

/// What the content is, by its magic bytes, or by being plain UTF-8 text.
pub fn detect(head: &[u8]) -> Result<FileKind, TypeRefusal> {
    if let Some(found) = infer::get(head) {
        return match found.matcher_type() {
            infer::MatcherType::App => Err(TypeRefusal::Executable),
            _ => match found.mime_type() {
                "text/html" => Err(TypeRefusal::Markup),
                "text/x-shellscript" => Err(TypeRefusal::Executable),
                "text/xml" | "application/xml" => markup_kind(head),
                mime => from_infer(mime).ok_or(TypeRefusal::NotAllowed(found.mime_type())),
            },
        };
    }
    if !is_text(head) {
        return Err(TypeRefusal::Unrecognized);
    }
    if starts_with_markup(head) {
        return markup_kind(head);
    }
    if text_start(head).starts_with(b"#!") {
        return Err(TypeRefusal::Executable);
    }
    Ok(FileKind::Text)
}

/// Maps `infer`'s media types to our kinds; `None` for a type outside the catalogue.
fn from_infer(mime: &str) -> Option<FileKind> {
    FileKind::from_media_type(mime).filter(|kind| !matches!(kind, FileKind::Text | FileKind::Csv))
}

/// XML: SVG when its root is `<svg`, otherwise markup a browser could render.
fn markup_kind(head: &[u8]) -> Result<FileKind, TypeRefusal> {
    let lower: Vec<u8> = head.iter().take(4096).map(u8::to_ascii_lowercase).collect();
    let has = |needle: &[u8]| lower.windows(needle.len()).any(|w| w == needle);
    if has(b"<svg") && !has(b"<html") && !has(b"<script") {
        return Ok(FileKind::Svg);
    }
    Err(TypeRefusal::Markup)
}

/// The text after a UTF-8 byte-order mark and leading white space.
fn text_start(head: &[u8]) -> &[u8] {
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let start = head.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(head.len());
    &head[start..]
}

/// Whether the text opens like a document a browser would render (WHATWG MIME sniffing's HTML
/// and XML signatures, and SVG).
fn starts_with_markup(head: &[u8]) -> bool {
    const OPENERS: [&[u8]; 21] = [
        b"<!doctype",
        b"<html",
        b"<head",
        b"<body",
        b"<script",
        b"<iframe",
        b"<svg",
        b"<?xml",
        b"<!--",
        b"<title",
        b"<style",
        b"<div",
        b"<table",
        b"<img",
        b"<a ",
        b"<p>",
        b"<p ",
        b"<br",
        b"<h1",
        b"<font",
        b"<b>",
    ];
    let start: Vec<u8> = text_start(head).iter().take(16).map(u8::to_ascii_lowercase).collect();
    OPENERS.iter().any(|opener| start.starts_with(opener))
}

/// UTF-8 with no NUL and no control characters other than tab, newline, carriage return and form
/// feed. A multi-byte character cut by the end of `head` is allowed.
fn is_text(head: &[u8]) -> bool {
    let valid = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(error) if error.error_len().is_none() => match std::str::from_utf8(&head[..error.valid_up_to()]) {
            Ok(text) => text,
            Err(_) => return false,
        },
        Err(_) => return false,
    };
    valid.chars().all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r' | '\u{c}'))
}

/// A file name made safe to show and to offer as a download name: the last path component only,
/// NFC, no control characters, no bidirectional or invisible formatting characters, no characters
/// reserved on common file systems, no leading dots, bounded length. Never used as a path.
#[derive(Clone, PartialEq, Eq)]
pub struct FileName(String);

impl fmt::Debug for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileName({} chars)", self.0.chars().count())
    }
}

/// Characters that change how text around them is displayed (bidirectional overrides, isolates,
/// marks) or are invisible: a name could otherwise show `exe.pdf` for `fdp.exe`.
fn is_format_character(c: char) -> bool {
    matches!(c,
        '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}'
        | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// Names Windows reserves for devices, whatever the extension.
const RESERVED_STEMS: [&str; 22] = [
    "con", "prn", "aux", "nul", "com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8", "com9", "lpt1", "lpt2",
    "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9",
];

/// Longest extension kept whole when a long name is cut.
const EXTENSION_CHARS_KEPT_MAX: usize = 16;

impl FileName {
    /// Sanitizes a name a client sent. Fails only when nothing usable is left.
    pub fn sanitize(raw: &str) -> Result<Self, FieldError> {
        let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
        let mut cleaned = String::with_capacity(last.len());
        for c in last.nfc() {
            if c.is_control() || is_format_character(c) {
                continue;
            }
            cleaned.push(if matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*') { '_' } else { c });
        }
        let trimmed = cleaned.trim().trim_start_matches('.').trim_end_matches(['.', ' ']).trim();
        if trimmed.is_empty() {
            return Err(FieldError::new("file", "The file needs a name (with an extension that matches its type)."));
        }
        let mut name = bounded(trimmed);
        let stem = name.split('.').next().unwrap_or("").to_ascii_lowercase();
        if RESERVED_STEMS.contains(&stem.trim()) {
            name.insert(0, '_');
        }
        Ok(FileName(name))
    }

    /// For names read back from the store, which were sanitized when written.
    pub fn from_stored(text: String) -> Self {
        FileName(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The extension after the last dot, in lower case; `None` when there is none.
    pub fn extension(&self) -> Option<String> {
        let (stem, extension) = self.0.rsplit_once('.')?;
        (!stem.is_empty() && !extension.is_empty()).then(|| extension.to_lowercase())
    }
}

/// Cuts a name to `FILE_NAME_CHARS_MAX` characters, keeping a short extension whole.
fn bounded(name: &str) -> String {
    if name.chars().count() <= FILE_NAME_CHARS_MAX {
        return name.to_owned();
    }
    let extension = name.rsplit_once('.').map(|(_, e)| e).filter(|e| e.chars().count() <= EXTENSION_CHARS_KEPT_MAX);
    match extension {
        Some(extension) => {
            let keep = FILE_NAME_CHARS_MAX - extension.chars().count() - 1;
            let stem: String = name.chars().take(keep).collect();
            format!("{}.{extension}", stem.trim_end_matches(['.', ' ']))
        }
        None => name.chars().take(FILE_NAME_CHARS_MAX).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> FileName {
        FileName::sanitize(text).expect("a usable name")
    }

    fn classify(head: &[u8], file: &str) -> Result<FileKind, TypeRefusal> {
        TypePolicy::default().classify(head, &name(file))
    }

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
    const PDF: &[u8] = b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n";

    #[test]
    fn names_lose_paths_controls_and_bidi_overrides() {
        assert_eq!(name("../../etc/passwd.txt").as_str(), "passwd.txt");
        assert_eq!(name("C:\\Users\\ann\\report.pdf").as_str(), "report.pdf");
        assert_eq!(name("in\u{202E}fdp.exe").as_str(), "infdp.exe");
        assert_eq!(name("a\u{0}b\nc\u{7f}d\u{9b}.txt").as_str(), "abcd.txt");
        assert_eq!(name("..hidden.txt").as_str(), "hidden.txt");
        assert_eq!(name("what?<is>this*.txt").as_str(), "what__is_this_.txt");
        assert_eq!(name("report.txt. . ").as_str(), "report.txt");
        assert_eq!(name("CON.txt").as_str(), "_CON.txt");
        assert_eq!(name("e\u{301}te\u{301}.txt").as_str(), "\u{e9}t\u{e9}.txt");
        for empty in ["", "..", "../..", "/", " . ", "\u{202E}", "dir/"] {
            assert!(FileName::sanitize(empty).is_err(), "{empty:?}");
        }
    }

    #[test]
    fn long_names_are_cut_keeping_the_extension() {
        let long = format!("{}.pdf", "x".repeat(500));
        let cut = name(&long);
        assert_eq!(cut.as_str().chars().count(), FILE_NAME_CHARS_MAX);
        assert!(cut.as_str().ends_with(".pdf"));
        assert_eq!(name(&"y".repeat(500)).as_str().chars().count(), FILE_NAME_CHARS_MAX);
    }

    #[test]
    fn extensions_are_lower_case_and_need_a_stem() {
        assert_eq!(name("Photo.JPG").extension().as_deref(), Some("jpg"));
        assert_eq!(name("archive.tar.gz").extension().as_deref(), Some("gz"));
        assert_eq!(name("README").extension(), None);
    }

    #[test]
    fn content_decides_and_the_extension_must_agree() {
        assert_eq!(classify(PNG, "a.png"), Ok(FileKind::Png));
        assert_eq!(classify(PDF, "a.pdf"), Ok(FileKind::Pdf));
        assert_eq!(classify(b"hello\nworld\n", "notes.txt"), Ok(FileKind::Text));
        assert_eq!(classify(b"a,b\n1,2\n", "data.csv"), Ok(FileKind::Csv));
        assert_eq!(classify(PNG, "a.pdf"), Err(TypeRefusal::ExtensionMismatch { detected: FileKind::Png }));
        assert_eq!(classify(PDF, "a.png"), Err(TypeRefusal::ExtensionMismatch { detected: FileKind::Pdf }));
        assert_eq!(classify(PNG, "png"), Err(TypeRefusal::NoExtension));
    }

    #[test]
    fn programs_scripts_and_markup_are_refused() {
        let mut elf = vec![0u8; 64];
        elf[..20].copy_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0");
        assert_eq!(classify(&elf, "a.txt"), Err(TypeRefusal::Executable));
        let mut pe = vec![0u8; 256];
        pe[..2].copy_from_slice(b"MZ");
        pe[0x3c] = 0x80;
        pe[0x80..0x84].copy_from_slice(b"PE\0\0");
        assert_eq!(classify(&pe, "a.pdf"), Err(TypeRefusal::Executable));
        assert_eq!(classify(b"#!/bin/sh\nrm -rf /\n", "a.txt"), Err(TypeRefusal::Executable));
        assert_eq!(classify(b"<!DOCTYPE html><html><script>x</script>", "a.txt"), Err(TypeRefusal::Markup));
        assert_eq!(classify(b"  <html><body>hi</body></html>", "a.txt"), Err(TypeRefusal::Markup));
        let svg = b"<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\"><script>x</script></svg>";
        assert!(classify(svg, "a.svg").is_err());
        let plain_svg = b"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1\" height=\"1\"/>";
        assert_eq!(classify(plain_svg, "a.svg"), Err(TypeRefusal::Svg));
        let with_svg = TypePolicy::new(ALL_FILE_KINDS.to_vec());
        assert_eq!(with_svg.classify(plain_svg, &name("a.svg")), Ok(FileKind::Svg));
    }

    #[test]
    fn binary_of_no_known_type_and_types_off_the_list_are_refused() {
        assert_eq!(classify(&[0, 1, 2, 3, 255, 254, 0, 7], "a.txt"), Err(TypeRefusal::Unrecognized));
        let only_pdf = TypePolicy::new(vec![FileKind::Pdf]);
        assert_eq!(only_pdf.classify(PNG, &name("a.png")), Err(TypeRefusal::NotAllowed("image/png")));
    }

    #[test]
    fn text_cut_inside_a_character_is_still_text() {
        let text = "é".repeat(10);
        let cut = &text.as_bytes()[..5];
        assert_eq!(classify(cut, "a.txt"), Ok(FileKind::Text));
    }

    #[test]
    fn media_types_round_trip() {
        for kind in ALL_FILE_KINDS {
            assert_eq!(FileKind::from_media_type(kind.media_type()), Some(kind));
            assert_eq!(FileKind::from_media_type(kind.content_type()), Some(kind));
        }
        assert!(!default_allowed_kinds().contains(&FileKind::Svg));
    }
}
