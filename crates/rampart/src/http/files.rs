//! Handlers for files (API.md "Files"). An upload is read from the multipart field `file` as a
//! stream and handed to the use case chunk by chunk; a download is streamed from the sealed blob
//! chunk by chunk (a `Range` opens only the chunks it needs), as an attachment in a sandbox.

use std::io::{Read, Seek, SeekFrom};

use axum::body::{Body, Bytes};
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use rampart_core::{ChannelId, ErrorCode, FileId};
use rampart_store::{BlobReader, FileRecord};

use super::error::ApiError;
use super::extract::{ClientMeta, Session};
use super::wire::FileView;
use super::AppState;

/// The Content-Security-Policy of a download: no script, no plugin, nothing loads, even if a
/// browser were to render the file in spite of `attachment` and `nosniff`.
pub const DOWNLOAD_CONTENT_SECURITY_POLICY: &str = "sandbox; default-src 'none'; frame-ancestors 'none'";
/// Room for the multipart framing around the file in the request body limit of an upload.
pub const MULTIPART_OVERHEAD_BYTES: u64 = 1024 * 1024;
/// Bytes read from a blob per piece of a download body.
const DOWNLOAD_PIECE_BYTES: u64 = rampart_crypto::BLOB_CHUNK_BYTES as u64;

fn not_found() -> ApiError {
    ApiError::of(ErrorCode::NotFound)
}

fn bad_form(message: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidInput, message)
}

pub async fn upload(
    State(state): State<AppState>,
    ClientMeta(meta): ClientMeta,
    session: Session,
    Path(id): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let channel = ChannelId::parse(&id).ok_or_else(not_found)?;
    let mut multipart = multipart.map_err(|_| {
        ApiError::new(ErrorCode::UnsupportedMediaType, "Send the file as multipart/form-data in a field named `file`.")
    })?;
    // The first part must be the file; nothing after it is read.
    let field = match multipart.next_field().await {
        Ok(Some(field)) if field.name() == Some("file") => field,
        Ok(Some(_)) => return Err(bad_form("The form's first field must be `file`; no other field is accepted.")),
        Ok(None) => return Err(bad_form("The form has no field named `file`.")),
        Err(_) => return Err(bad_form("The form could not be read.")),
    };
    let name = field.file_name().unwrap_or("").to_owned();
    let stream = field.map(|piece| piece.map_err(std::io::Error::other));
    let mut body = std::pin::pin!(tokio_util::io::StreamReader::new(stream));
    let file = state.app.upload_file(&session.auth, &channel, &name, &mut body, &meta).await?;
    Ok((StatusCode::CREATED, Json(FileView::from(&file))).into_response())
}

/// What a `Range` header asks for, as far as it is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeAsked {
    /// No range (or one we do not serve, such as several ranges): the whole file.
    Whole,
    /// Bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// Outside the file: 416.
    Unsatisfiable,
}

/// Parses a single-range `Range: bytes=…` header against a file of `size` bytes (RFC 9110
/// §14.1.2). Anything malformed or with several ranges is ignored, as the RFC allows.
pub fn parse_range(value: &str, size: u64) -> RangeAsked {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAsked::Whole;
    };
    if spec.contains(',') {
        return RangeAsked::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAsked::Whole;
    };
    let number = |text: &str| -> Option<u64> {
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())).then(|| text.parse().ok()).flatten()
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            Some(0) => RangeAsked::Unsatisfiable,
            Some(_) if size == 0 => RangeAsked::Unsatisfiable,
            Some(n) => RangeAsked::Part { start: size.saturating_sub(n), end: size - 1 },
            None => RangeAsked::Whole,
        },
        (start, end) => {
            let Some(start) = number(start) else { return RangeAsked::Whole };
            let end = match end {
                "" => None,
                text => match number(text) {
                    Some(end) => Some(end),
                    None => return RangeAsked::Whole,
                },
            };
            if end.is_some_and(|end| end < start) {
                return RangeAsked::Whole;
            }
            if start >= size {
                return RangeAsked::Unsatisfiable;
            }
            RangeAsked::Part { start, end: end.map_or(size - 1, |end| end.min(size - 1)) }
        }
    }
}

/// `attachment` with the name twice: an ASCII fallback in quotes, and the exact name in RFC 8187
/// encoding (`filename*=UTF-8''…`), so no byte of it can break out of the header.
pub fn content_disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| if (c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '%')) || c == ' ' { c } else { '_' })
        .collect();
    let mut encoded = String::with_capacity(name.len() * 3);
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// The file's content from `start`, `length` bytes, read and opened one piece at a time on the
/// blocking pool.
fn body_stream(reader: BlobReader, start: u64, length: u64) -> Body {
    let state = (Some(reader), start, length);
    let stream = futures_util::stream::unfold(state, |(reader, position, left)| async move {
        let mut reader = reader?;
        if left == 0 {
            return None;
        }
        let piece = left.min(DOWNLOAD_PIECE_BYTES);
        let read = tokio::task::spawn_blocking(move || {
            let mut buffer = vec![0u8; usize::try_from(piece).unwrap_or(0)];
            reader.seek(SeekFrom::Start(position))?;
            reader.read_exact(&mut buffer)?;
            Ok::<_, std::io::Error>((reader, buffer))
        })
        .await;
        match read {
            Ok(Ok((reader, buffer))) => Some((Ok(Bytes::from(buffer)), (Some(reader), position + piece, left - piece))),
            Ok(Err(error)) => {
                tracing::error!(%error, "a file's blob could not be read");
                Some((Err(error), (None, position, 0)))
            }
            Err(error) => Some((Err(std::io::Error::other(error)), (None, position, 0))),
        }
    });
    Body::from_stream(stream)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn download_headers(file: &FileRecord, headers: &mut HeaderMap) -> Result<(), ApiError> {
    let name = file.name.as_ref().map(|n| n.as_str()).unwrap_or("file");
    let set = |headers: &mut HeaderMap, name: header::HeaderName, value: &str| -> Result<(), ApiError> {
        let value = HeaderValue::from_str(value).map_err(|_| ApiError::of(ErrorCode::Internal))?;
        headers.insert(name, value);
        Ok(())
    };
    set(headers, header::CONTENT_TYPE, file.kind.content_type())?;
    set(headers, header::CONTENT_DISPOSITION, &content_disposition(name))?;
    set(headers, header::CONTENT_SECURITY_POLICY, DOWNLOAD_CONTENT_SECURITY_POLICY)?;
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff")?;
    set(headers, header::ACCEPT_RANGES, "bytes")?;
    if let Some(digest) = &file.sha256 {
        set(headers, header::ETAG, &format!("\"{}\"", hex(digest)))?;
    }
    Ok(())
}

pub async fn download(
    State(state): State<AppState>,
    ClientMeta(meta): ClientMeta,
    session: Session,
    Path(id): Path<String>,
    request_headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = FileId::parse(&id).ok_or_else(not_found)?;
    let (file, reader) = state.app.open_file(&session.auth, &id, &meta).await?;
    let etag = file.sha256.as_ref().map(|d| format!("\"{}\"", hex(d)));
    // If-Range with another validator: the file changed (it cannot, but the rule is the RFC's).
    let if_range_ok = match request_headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        Some(value) => etag.as_deref() == Some(value.trim()),
        None => true,
    };
    let asked = match request_headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(value) if if_range_ok => parse_range(value, file.size),
        _ => RangeAsked::Whole,
    };
    let mut response = match asked {
        RangeAsked::Whole => {
            let mut response = Response::new(body_stream(reader, 0, file.size));
            response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(file.size));
            response
        }
        RangeAsked::Part { start, end } => {
            let length = end - start + 1;
            let mut response = Response::new(body_stream(reader, start, length));
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            let range = format!("bytes {start}-{end}/{}", file.size);
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            headers.insert(header::CONTENT_RANGE, HeaderValue::from_str(&range).map_err(|_| not_found())?);
            response
        }
        RangeAsked::Unsatisfiable => {
            let mut response = ApiError::of(ErrorCode::RangeNotSatisfiable).into_response();
            let range = format!("bytes */{}", file.size);
            response
                .headers_mut()
                .insert(header::CONTENT_RANGE, HeaderValue::from_str(&range).map_err(|_| not_found())?);
            return Ok(response);
        }
    };
    download_headers(&file, response.headers_mut())?;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_as_rfc_9110_says() {
        use RangeAsked::*;
        assert_eq!(parse_range("bytes=0-99", 1000), Part { start: 0, end: 99 });
        assert_eq!(parse_range("bytes=900-", 1000), Part { start: 900, end: 999 });
        assert_eq!(parse_range("bytes=-100", 1000), Part { start: 900, end: 999 });
        assert_eq!(parse_range("bytes=-5000", 1000), Part { start: 0, end: 999 });
        assert_eq!(parse_range("bytes=990-5000", 1000), Part { start: 990, end: 999 });
        assert_eq!(parse_range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), Whole);
        assert_eq!(parse_range("bytes=5-1", 1000), Whole);
        assert_eq!(parse_range("items=0-1", 1000), Whole);
        assert_eq!(parse_range("bytes=a-b", 1000), Whole);
        assert_eq!(parse_range("bytes=+1-2", 1000), Whole);
    }

    #[test]
    fn content_disposition_is_attachment_and_escapes_everything() {
        assert_eq!(
            content_disposition("report 1.pdf"),
            "attachment; filename=\"report 1.pdf\"; filename*=UTF-8''report%201.pdf"
        );
        let tricky = content_disposition("a\"b\\c;d\u{e9}.txt");
        assert_eq!(tricky, "attachment; filename=\"a_b_c;d_.txt\"; filename*=UTF-8''a%22b%5Cc%3Bd%C3%A9.txt");
        assert!(HeaderValue::from_str(&content_disposition("\u{202e}x\r\ny.txt")).is_ok());
    }
}
