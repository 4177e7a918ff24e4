//! Files through the real server (issue 6): uploads stream into sealed blobs (no plaintext on
//! disk, bounded memory, 413 the moment the limit or the quota is crossed, nothing left behind),
//! the type is decided by content and must match the name, names are sanitized, images lose their
//! metadata and bombs are refused, a real clamd refuses EICAR (and its absence refuses every
//! upload), downloads are for members only with safe headers and ranges, and deleting the message
//! deletes the blob.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{curl, expect_error, python_post, rustls_client, Dirs, Server, User};

const SENTINEL: &str = "WOMBAT-FILE-SENTINEL-8c2f1a";
const NO_SCAN: &str = "[files]\nscanning = false\n";

fn server_with(config: &str) -> Server {
    Server::start_with(Arc::new(Dirs::new()), config, &[])
}

/// A multipart/form-data body with one field `file` named `name` (sent as raw UTF-8, as
/// browsers do), holding `data`.
fn form(name: &str, data: &[u8]) -> (String, Vec<u8>) {
    let boundary = "rampart-test-boundary-5f9e";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn upload(server: &Server, user: &User, channel: &str, name: &str, data: &[u8]) -> reqwest::Response {
    let (content_type, body) = form(name, data);
    upload_body(server, user, channel, &content_type, body).await
}

/// POSTs `body` (a form of type `content_type`) to the channel's files.
async fn upload_body(
    server: &Server,
    user: &User,
    channel: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    server
        .client()
        .post(server.url(&format!("/api/v1/channels/{channel}/files")))
        .headers(user.bearer())
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("upload")
}

async fn uploaded(server: &Server, user: &User, channel: &str, name: &str, data: &[u8]) -> Value {
    let response = upload(server, user, channel, name, data).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap_or_default());
    response.json().await.expect("json")
}

async fn download(server: &Server, user: &User, id: &str, range: Option<&str>) -> reqwest::Response {
    let mut request = server.client().get(server.url(&format!("/api/v1/files/{id}"))).headers(user.bearer());
    if let Some(range) = range {
        request = request.header("range", range);
    }
    request.send().await.expect("download")
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
}

/// Every regular file under `dir` (recursively), except the temporary area.
fn stored_blobs(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    for entry in entries {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            found.extend(stored_blobs(&path));
        } else {
            found.push(path);
        }
    }
    found
}

fn temp_blobs(server: &Server) -> usize {
    std::fs::read_dir(server.dirs.data().join("blobs").join("tmp")).map(|d| d.count()).unwrap_or(0)
}

fn blob_count(server: &Server) -> usize {
    stored_blobs(&server.dirs.data().join("blobs"))
        .iter()
        .filter(|p| !p.starts_with(server.dirs.data().join("blobs/tmp")))
        .count()
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

fn text_file(len: usize) -> Vec<u8> {
    let mut data: Vec<u8> = (0..len).map(|i| b"abcdefghij klmnopqrstuvwxyz\n"[i % 28]).collect();
    data[len / 2..len / 2 + SENTINEL.len()].copy_from_slice(SENTINEL.as_bytes());
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_then_download_with_ranges_and_no_plaintext_on_disk() {
    let server = server_with(NO_SCAN);
    let alice = server.user("member").await;
    let channel = server.channel(&alice, "private").await;
    let data = text_file(200_000);
    let name = format!("{SENTINEL}-notes.txt");
    let file = uploaded(&server, &alice, &channel, &name, &data).await;
    assert_eq!(file["name"], name.as_str());
    assert_eq!(file["size"], data.len());
    assert_eq!(file["content_type"], "text/plain; charset=utf-8");
    assert_eq!(file["sha256"], sha256_hex(&data));
    let id = file["id"].as_str().expect("id");

    let whole = download(&server, &alice, id, None).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(header(&whole, "content-type"), "text/plain; charset=utf-8");
    assert!(header(&whole, "content-disposition").starts_with("attachment; filename=\""));
    assert_eq!(header(&whole, "x-content-type-options"), "nosniff");
    assert!(header(&whole, "content-security-policy").starts_with("sandbox"));
    assert_eq!(header(&whole, "accept-ranges"), "bytes");
    assert_eq!(header(&whole, "content-length"), data.len().to_string());
    assert_eq!(whole.bytes().await.expect("body").as_ref(), data.as_slice());

    let part = download(&server, &alice, id, Some("bytes=65530-65545")).await;
    assert_eq!(part.status(), 206);
    assert_eq!(header(&part, "content-range"), format!("bytes 65530-65545/{}", data.len()));
    assert_eq!(part.bytes().await.expect("body").as_ref(), &data[65530..=65545]);
    let tail = download(&server, &alice, id, Some("bytes=-10")).await;
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().await.expect("body").as_ref(), &data[data.len() - 10..]);
    let outside = download(&server, &alice, id, Some("bytes=999999-")).await;
    assert_eq!(header(&outside, "content-range"), format!("bytes */{}", data.len()));
    expect_error(outside, 416, "range_not_satisfiable").await;

    // Neither the content nor the name is anywhere in data_dir in clear.
    let _ = server.rampart(&["keys", "status"]);
    for path in stored_blobs(&server.dirs.data()) {
        let bytes = std::fs::read(&path).expect("read");
        assert!(!bytes.windows(SENTINEL.len()).any(|w| w == SENTINEL.as_bytes()), "{} holds plaintext", path.display());
    }
    assert_eq!(blob_count(&server), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_members_of_the_files_channel_can_download_it() {
    let server = server_with(NO_SCAN);
    let alice = server.user("member").await;
    let mallory = server.user("member").await;
    let private = server.channel(&alice, "private").await;
    let public = server.channel(&alice, "public").await;
    let secret = uploaded(&server, &alice, &private, "secret.txt", b"private words\n").await;
    let open = uploaded(&server, &alice, &public, "open.txt", b"public words\n").await;
    let missing = download(&server, &mallory, "00000000-0000-4000-8000-000000000000", None).await;
    let missing = expect_error(missing, 404, "not_found").await;
    for file in [&secret, &open] {
        let refused = download(&server, &mallory, file["id"].as_str().expect("id"), None).await;
        let refused = expect_error(refused, 404, "not_found").await;
        assert_eq!(refused, missing, "a file one cannot see looks like no file");
    }
    expect_error(upload(&server, &mallory, &private, "x.txt", b"hi\n").await, 404, "not_found").await;
    // Joining the public channel makes its file readable.
    let join = server.post_json(&mallory, &format!("/api/v1/channels/{public}/join"), json!({})).await;
    assert_eq!(join.status(), 204);
    let now_member = download(&server, &mallory, open["id"].as_str().expect("id"), None).await;
    assert_eq!(now_member.status(), 200);
    let anonymous = server.client().get(server.url(&format!("/api/v1/files/{}", secret["id"].as_str().expect("id"))));
    expect_error(anonymous.send().await.expect("get"), 401, "unauthenticated").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossing_the_size_limit_mid_stream_is_413_at_once_and_leaves_nothing() {
    let server = server_with("[files]\nscanning = false\nbytes_max = 1048576\n");
    let alice = server.user("member").await;
    let channel = server.channel(&alice, "public").await;
    let (content_type, body) = form("big.txt", &text_file(2 * 1024 * 1024));
    // The body sends 2 MiB, then never ends: only an answer given mid-stream can arrive.
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = body.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let endless = futures_util::StreamExt::chain(futures_util::stream::iter(pieces), futures_util::stream::pending());
    let started = Instant::now();
    let response = server
        .client()
        .post(server.url(&format!("/api/v1/channels/{channel}/files")))
        .headers(alice.bearer())
        .header("content-type", content_type)
        .body(reqwest::Body::wrap_stream(endless))
        .send()
        .await
        .expect("an answer before the body ends");
    let body = expect_error(response, 413, "payload_too_large").await;
    assert!(body["error"]["message"].as_str().expect("message").contains("1048576"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(20));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(temp_blobs(&server), 0, "no temporary data is left");
    assert_eq!(blob_count(&server), 0);
    // Just under the limit is fine.
    uploaded(&server, &alice, &channel, "fits.txt", &text_file(1024 * 1024)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_user_quota_is_enforced() {
    let server = server_with("[files]\nscanning = false\nuser_quota_bytes = 1000000\n");
    let alice = server.user("member").await;
    let bob = server.user("member").await;
    let channel = server.channel(&alice, "public").await;
    server.post_json(&bob, &format!("/api/v1/channels/{channel}/join"), json!({})).await;
    uploaded(&server, &alice, &channel, "one.txt", &text_file(600_000)).await;
    let over = upload(&server, &alice, &channel, "two.txt", &text_file(600_000)).await;
    expect_error(over, 413, "quota_exceeded").await;
    assert_eq!(blob_count(&server), 1);
    assert_eq!(temp_blobs(&server), 0);
    uploaded(&server, &alice, &channel, "three.txt", &text_file(400_000)).await;
    expect_error(upload(&server, &alice, &channel, "four.txt", b"x\n").await, 413, "quota_exceeded").await;
    // The quota is each user's own.
    uploaded(&server, &bob, &channel, "bobs.txt", &text_file(600_000)).await;
}

fn elf() -> Vec<u8> {
    let mut elf = vec![0u8; 4096];
    elf[..20].copy_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0");
    elf
}

fn pe() -> Vec<u8> {
    let mut pe = vec![0u8; 4096];
    pe[..2].copy_from_slice(b"MZ");
    pe[0x3c] = 0x80;
    pe[0x80..0x84].copy_from_slice(b"PE\0\0");
    pe
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let picture = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x * 7) as u8, (y * 5) as u8, 99]));
    let mut out = std::io::Cursor::new(Vec::new());
    picture.write_to(&mut out, image::ImageFormat::Png).expect("png");
    out.into_inner()
}

const PDF: &[u8] = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programs_scripts_markup_svg_and_polyglots_are_415() {
    let server = server_with(NO_SCAN);
    let alice = server.user("member").await;
    let channel = server.channel(&alice, "public").await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("tool.txt", elf()),
        ("tool", elf()),
        ("setup.exe", pe()),
        ("invoice.pdf", pe()),
        ("run.sh", b"#!/bin/sh\necho hi\n".to_vec()),
        ("run.txt", b"#!/usr/bin/env python3\nprint(1)\n".to_vec()),
        ("page.html", b"<!DOCTYPE html><html><script>alert(1)</script></html>".to_vec()),
        ("page.txt", b"  <html><body onload=alert(1)></body></html>".to_vec()),
        ("logo.svg", b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>".to_vec()),
        ("plain.svg", b"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1\" height=\"1\"/>".to_vec()),
        ("picture.pdf", png(4, 4)),
        ("document.png", PDF.to_vec()),
        ("notes.png", b"just some text\n".to_vec()),
        ("binary.txt", vec![0, 159, 146, 150, 0, 1, 2, 3]),
    ];
    for (name, data) in cases {
        let response = upload(&server, &alice, &channel, name, &data).await;
        let body = expect_error(response, 415, "unsupported_media_type").await;
        assert!(!body.to_string().contains("alert"), "the refusal echoes no content: {body}");
    }
    assert_eq!(blob_count(&server), 0);
    assert_eq!(temp_blobs(&server), 0);
    for (name, data) in [("doc.pdf", PDF.to_vec()), ("pic.png", png(4, 4)), ("data.csv", b"a,b\n1,2\n".to_vec())] {
        uploaded(&server, &alice, &channel, name, &data).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_names_are_sanitized_and_offered_safely() {
    let server = server_with(NO_SCAN);
    let alice = server.user("member").await;
    let channel = server.channel(&alice, "public").await;
    let cases = [
        ("../../../etc/cron.d/evil.txt", "evil.txt"),
        ("..\\..\\windows\\system32\\evil.txt", "evil.txt"),
        ("report\u{202E}txt.exe.txt", "reporttxt.exe.txt"),
        ("a\u{200F}b\u{2066}c\tdef.txt", "abcdef.txt"),
        ("..hidden.txt", "hidden.txt"),
        ("semi;colon=x.txt", "semi;colon=x.txt"),
        ("r\u{e9}sum\u{e9} \u{1F4C4}.txt", "r\u{e9}sum\u{e9} \u{1F4C4}.txt"),
    ];
    for (sent, stored) in cases {
        let file = uploaded(&server, &alice, &channel, sent, b"some text\n").await;
        assert_eq!(file["name"], stored, "{sent:?}");
        let response = download(&server, &alice, file["id"].as_str().expect("id"), None).await;
        let disposition = header(&response, "content-disposition");
        assert!(disposition.starts_with("attachment; filename=\""), "{disposition}");
        assert!(disposition.is_ascii(), "{disposition}");
        assert!(
            !disposition.contains('/') && !disposition.contains('\\') && !disposition.contains(".."),
            "{disposition}"
        );
        assert_eq!(disposition.matches('"').count(), 2, "{disposition}");
    }
    let long = format!("{}.txt", "n".repeat(1000));
    let file = uploaded(&server, &alice, &channel, &long, b"x\n").await;
    assert_eq!(file["name"].as_str().expect("name").chars().count(), 200);
    let nameless = upload(&server, &alice, &channel, "../..", b"x\n").await;
    expect_error(nameless, 400, "invalid_input").await;
}

/// A JPEG with an EXIF segment holding GPS tags and `SENTINEL`, inserted after SOI.
fn jpeg_with_exif() -> Vec<u8> {
    let picture = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 128]));
    let mut encoded = std::io::Cursor::new(Vec::new());
    picture.write_to(&mut encoded, image::ImageFormat::Jpeg).expect("jpeg");
    let encoded = encoded.into_inner();
    let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
    tiff.extend_from_slice(b"\0\x01\x88\x25\0\x04\0\0\0\x01\0\0\0\x1a\0\0\0\0");
    tiff.extend_from_slice(b"\0\x01\0\x01\0\x02\0\0\0\x02N\0\0\0\0\0");
    tiff.extend_from_slice(format!("GPSLatitude 48.8584 {SENTINEL}").as_bytes());
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let length = u16::try_from(app1.len() + 2).expect("length");
    let mut out = encoded[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&encoded[2..]);
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A PNG of a few hundred bytes whose header claims `side` × `side` pixels.
fn png_bomb(side: u32) -> Vec<u8> {
    let mut data = png(8, 8);
    data[16..20].copy_from_slice(&side.to_be_bytes());
    data[20..24].copy_from_slice(&side.to_be_bytes());
    let crc = crc32(&data[12..29]);
    data[29..33].copy_from_slice(&crc.to_be_bytes());
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_metadata_is_stripped_and_decompression_bombs_are_refused() {
    let server = server_with(NO_SCAN);
    let alice = server.user("member").await;
    let channel = server.channel(&alice, "public").await;
    let original = jpeg_with_exif();
    assert!(original.windows(SENTINEL.len()).any(|w| w == SENTINEL.as_bytes()));
    let file = uploaded(&server, &alice, &channel, "holiday.jpg", &original).await;
    let stored = download(&server, &alice, file["id"].as_str().expect("id"), None).await.bytes().await.expect("body");
    assert!(!stored.windows(4).any(|w| w == b"Exif"), "the EXIF segment is gone");
    assert!(!stored.windows(SENTINEL.len()).any(|w| w == SENTINEL.as_bytes()), "the GPS text is gone");
    let decoded = image::load_from_memory(&stored).expect("still a JPEG");
    assert_eq!((decoded.width(), decoded.height()), (64, 48));
    assert_eq!(file["size"], stored.len());
    assert_eq!(file["sha256"], sha256_hex(&stored), "the digest is of what is stored");

    let mut png_with_text = png(16, 16);
    let mut chunk = b"tEXtComment\0".to_vec();
    chunk.extend_from_slice(SENTINEL.as_bytes());
    let mut text = u32::try_from(chunk.len() - 4).expect("len").to_be_bytes().to_vec();
    text.extend_from_slice(&chunk);
    text.extend_from_slice(&crc32(&chunk).to_be_bytes());
    png_with_text.splice(33..33, text);
    let file = uploaded(&server, &alice, &channel, "drawing.png", &png_with_text).await;
    let stored = download(&server, &alice, file["id"].as_str().expect("id"), None).await.bytes().await.expect("body");
    assert!(!stored.windows(SENTINEL.len()).any(|w| w == SENTINEL.as_bytes()), "the text chunk is gone");
    assert_eq!(image::load_from_memory(&stored).expect("png").width(), 16);

    let bomb = png_bomb(100_000);
    assert!(bomb.len() < 1024);
    let started = Instant::now();
    let refused =
        expect_error(upload(&server, &alice, &channel, "bomb.png", &bomb).await, 413, "payload_too_large").await;
    assert!(refused["error"]["message"].as_str().expect("message").contains("pixels"), "{refused}");
    assert!(started.elapsed() < Duration::from_secs(5), "refused before decoding");
    let broken = expect_error(
        upload(&server, &alice, &channel, "broken.png", &png(8, 8)[..60]).await,
        415,
        "unsupported_media_type",
    )
    .await;
    assert!(broken["error"]["message"].as_str().is_some());
    assert_eq!(temp_blobs(&server), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_message_deletes_the_blob() {
    let server = server_with(NO_SCAN);
    let alice = server.user("member").await;
    let bob = server.user("member").await;
    let channel = server.channel(&alice, "public").await;
    let file = uploaded(&server, &alice, &channel, "plan.txt", b"the plan\n").await;
    let id = file["id"].as_str().expect("id");
    let not_hers = server.post_json(&bob, &format!("/api/v1/channels/{channel}/join"), json!({})).await;
    assert_eq!(not_hers.status(), 204);
    let stolen = server
        .post_json(&bob, &format!("/api/v1/channels/{channel}/messages"), json!({ "body": "mine", "file_ids": [id] }))
        .await;
    expect_error(stolen, 400, "invalid_input").await;
    let sent = server
        .post_json(
            &alice,
            &format!("/api/v1/channels/{channel}/messages"),
            json!({ "body": "see file", "file_ids": [id] }),
        )
        .await;
    assert_eq!(sent.status(), 201);
    let message: Value = sent.json().await.expect("json");
    assert_eq!(message["files"][0]["id"], id);
    assert_eq!(message["files"][0]["name"], "plan.txt");
    assert_eq!(blob_count(&server), 1);
    assert_eq!(download(&server, &bob, id, None).await.status(), 200);
    let deleted = server
        .client()
        .delete(server.url(&format!("/api/v1/messages/{}", message["id"].as_str().expect("id"))))
        .headers(alice.bearer())
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), 204);
    assert_eq!(blob_count(&server), 0, "the blob is deleted with the message");
    expect_error(download(&server, &alice, id, None).await, 404, "not_found").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mib_upload_keeps_the_servers_memory_bounded() {
    const SIZE: usize = 50 * 1024 * 1024;
    let server = server_with(NO_SCAN);
    let alice = server.user("member").await;
    let channel = server.channel(&alice, "public").await;
    uploaded(&server, &alice, &channel, "warmup.txt", &text_file(2 * 1024 * 1024)).await;
    let before = server.rss_kib();
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let pid = server.child.id();
    let sampler = {
        let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Some(rss) = rss_of(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let (content_type, body) = form("large.txt", &text_file(SIZE));
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = body.chunks(256 * 1024).map(|c| Ok(c.to_vec())).collect();
    drop(body);
    let started = Instant::now();
    let response = server
        .client()
        .post(server.url(&format!("/api/v1/channels/{channel}/files")))
        .headers(alice.bearer())
        .header("content-type", content_type)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(pieces)))
        .timeout(Duration::from_secs(300))
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 201);
    let upload_secs = started.elapsed().as_secs_f64();
    let file: Value = response.json().await.expect("json");
    let started = Instant::now();
    let mut download = download(&server, &alice, file["id"].as_str().expect("id"), None).await;
    let mut received = 0usize;
    while let Some(piece) = download.chunk().await.expect("piece") {
        received += piece.len();
    }
    let download_secs = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler");
    assert_eq!(received, SIZE);
    let grown_kib = peak.load(Ordering::Relaxed).saturating_sub(before);
    println!(
        "50 MiB upload: {upload_secs:.2} s ({:.0} MiB/s); download {download_secs:.2} s ({:.0} MiB/s); RSS before {before} KiB, peak growth {grown_kib} KiB",
        50.0 / upload_secs,
        50.0 / download_secs
    );
    assert!(grown_kib < 16 * 1024, "the server's memory grew by {grown_kib} KiB for a 50 MiB upload");
}

fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()
}

/// A clamd of the test's own: foreground, on a socket in a temporary directory, with one test
/// signature (a body signature of the EICAR test string) as its whole database.
struct Clamd {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Clamd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clamd_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("clamd"))
        .find(|candidate| candidate.is_file())
}

/// The EICAR test file, put together at run time so that this source file is not itself flagged.
fn eicar() -> Vec<u8> {
    let head = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$";
    let tail = ["EICAR", "STANDARD", "ANTIVIRUS", "TEST", "FILE!$H+H*"].join("-");
    format!("{head}{tail}").into_bytes()
}

impl Clamd {
    /// Starts clamd; `None` (after saying why) when it is not installed — a failure under CI.
    fn start() -> Option<Clamd> {
        let Some(binary) = clamd_binary() else {
            assert!(
                std::env::var("CI").map(|v| v != "true").unwrap_or(true),
                "clamd is not installed: CI must install clamav-daemon (see .ci/run)"
            );
            eprintln!("clamd is not installed here; the real-scanner test is skipped (apt-get install clamav-daemon)");
            return None;
        };
        let dir = tempfile::tempdir().expect("dir");
        let db = dir.path().join("db");
        std::fs::create_dir(&db).expect("db dir");
        std::fs::create_dir(dir.path().join("tmp")).expect("tmp dir");
        let marker: String = "EICAR-STANDARD-ANTIVIRUS-TEST-FILE".bytes().map(|b| format!("{b:02x}")).collect();
        std::fs::write(db.join("rampart-test.ndb"), format!("Rampart.Test.EICAR:0:*:{marker}\n")).expect("signature");
        let socket = dir.path().join("clamd.sock");
        let config = dir.path().join("clamd.conf");
        std::fs::write(
            &config,
            format!(
                "Foreground yes\nLocalSocket {}\nDatabaseDirectory {}\nTemporaryDirectory {}\nLogFile {}\nStreamMaxLength 200M\nMaxThreads 2\n",
                socket.display(),
                db.display(),
                dir.path().join("tmp").display(),
                dir.path().join("clamd.log").display(),
            ),
        )
        .expect("config");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start clamd");
        let clamd = Clamd { child, socket, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !clamd.answers() {
            assert!(Instant::now() < deadline, "clamd did not start within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(clamd)
    }

    fn answers(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::os::unix::net::UnixStream::connect(&self.socket) else { return false };
        let mut reply = [0u8; 8];
        stream.write_all(b"zPING\0").is_ok() && stream.read(&mut reply).is_ok_and(|n| reply[..n].starts_with(b"PONG"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_clamd_refuses_eicar_and_without_it_uploads_fail_closed() {
    let Some(clamd) = Clamd::start() else { return };
    let server = server_with(&format!("[files]\nclamd = \"unix:{}\"\n", clamd.socket.display()));
    let owner = server.user("owner").await;
    let channel = server.channel(&owner, "public").await;
    let clean = uploaded(&server, &owner, &channel, "clean.txt", b"nothing to see here\n").await;
    assert!(clean["id"].is_string());
    let infected = upload(&server, &owner, &channel, "eicar.txt", &eicar()).await;
    expect_error(infected, 422, "malware_detected").await;
    assert_eq!(blob_count(&server), 1, "the infected file is not stored");
    assert_eq!(temp_blobs(&server), 0);
    let audit: Value = server
        .client()
        .get(server.url("/api/v1/admin/audit?limit=1000"))
        .headers(owner.bearer())
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("json");
    let record = audit
        .as_array()
        .expect("records")
        .iter()
        .find(|r| r["action"] == "file.malware_refused")
        .unwrap_or_else(|| panic!("no audit record of the refusal: {audit}"));
    assert_eq!(record["outcome"], "failure");
    assert!(record["details"].to_string().contains("Rampart.Test.EICAR"), "{record}");

    drop(clamd);
    let unavailable = upload(&server, &owner, &channel, "later.txt", b"clamd is gone\n").await;
    assert!(unavailable.headers().contains_key("retry-after"));
    expect_error(unavailable, 503, "unavailable").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.log_text().contains("malware scanner gave no verdict") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = server.log_text();
    assert!(log.contains("malware scanner gave no verdict"), "the refusal is logged: {log}");
}

/// Issue 16 item 12: an upload refused by size gets its JSON 413 delivered to real clients over
/// HTTP/1.1 and HTTP/2: before `100 Continue` when `Content-Length` already says too much, and
/// when the file crosses the limit while it streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_a_refused_upload_reaches_curl_python_and_reqwest_over_both_protocols() {
    let server = server_with("[files]\nscanning = false\nbytes_max = 1048576\n");
    let alice = server.user("member").await;
    let channel = server.channel(&alice, "public").await;
    let url = server.url(&format!("/api/v1/channels/{channel}/files"));
    let auth = format!("Authorization: Bearer {}", alice.token);
    let root = server.dirs.root.path();
    // 3 MiB: over the request limit by its length. 1.5 MiB: under it, but the file crosses the
    // 1 MiB limit while it streams.
    let (huge, over_by_length) = (root.join("huge.txt"), root.join("over.txt"));
    std::fs::write(&huge, text_file(3 * 1024 * 1024)).expect("write");
    std::fs::write(&over_by_length, text_file(3 * 1024 * 1024 / 2)).expect("write");

    let field = |path: &Path| format!("file=@{};filename=big.txt;type=application/octet-stream", path.display());
    let waited =
        curl(&server, &["--http1.1", "-H", "Expect: 100-continue", "-H", &auth, "-F", &field(&huge), &url], None);
    waited.expect_error(413, "payload_too_large", "curl HTTP/1.1, Expect, Content-Length");
    assert!(!waited.trace.contains("100 Continue"), "refused before 100 Continue:\n{}", waited.trace);
    curl(&server, &["--http2", "-H", &auth, "-F", &field(&huge), &url], None).expect_error(
        413,
        "payload_too_large",
        "curl HTTP/2, Content-Length",
    );
    for protocol in ["--http1.1", "--http2"] {
        let seen = curl(&server, &[protocol, "-H", &auth, "-F", &field(&over_by_length), &url], None);
        seen.expect_error(413, "payload_too_large", &format!("curl {protocol}, crossing while streaming"));
    }

    let (content_type, body) = form("big.txt", &text_file(3 * 1024 * 1024 / 2));
    let form_file = root.join("form.bin");
    std::fs::write(&form_file, &body).expect("write");
    let path = format!("/api/v1/channels/{channel}/files");
    for chunked in [false, true] {
        if let Some(seen) = python_post(&server, &path, &content_type, &form_file, chunked, &alice.token) {
            seen.expect_error(413, "payload_too_large", &format!("Python http.client, chunked {chunked}"));
        }
    }

    let mut tls = rustls_client(&[server.ca_pem()], &[&rustls::version::TLS13]);
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let http1 = reqwest::Client::builder().use_preconfigured_tls(tls).http1_only().build().expect("client");
    for (name, client) in [("HTTP/1.1", http1), ("HTTP/2", server.client())] {
        let pieces: Vec<Result<Vec<u8>, std::io::Error>> = body.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
        let streaming = client
            .post(&url)
            .headers(alice.bearer())
            .header("content-type", &content_type)
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(pieces)))
            .send()
            .await
            .unwrap_or_else(|e| panic!("reqwest {name}, streamed: {e}"));
        expect_error(streaming, 413, "payload_too_large").await;
    }
}

/// A multipart body that sends the form's head, then `piece` every `every`, and never ends.
fn trickle(piece: Vec<u8>, every: Duration) -> reqwest::Body {
    let (_, body) = form("slow.txt", b"");
    let head_len = body.len() - "\r\n--rampart-test-boundary-5f9e--\r\n".len();
    let head: Result<Vec<u8>, std::io::Error> = Ok(body[..head_len].to_vec());
    let rest = futures_util::stream::unfold(piece, move |piece| async move {
        tokio::time::sleep(every).await;
        Some((Ok(piece.clone()), piece))
    });
    reqwest::Body::wrap_stream(futures_util::StreamExt::chain(futures_util::stream::iter([head]), rest))
}

/// The content type of `trickle`'s form.
fn trickle_type() -> String {
    form("x.txt", b"").0
}

/// Issue 16 item 7: one member's trickling uploads take their own places only (429 with
/// `Retry-After` past the per-user cap), so another member still uploads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_one_members_trickling_uploads_do_not_block_anothers() {
    let server = server_with(
        "[files]\nscanning = false\nuploads_at_once_max = 2\nuploads_per_user_at_once_max = 1\n\
         upload_rate_min_bytes_per_sec = 0\n",
    );
    let alice = server.user("member").await;
    let bob = server.user("member").await;
    let channel = server.channel(&alice, "public").await;
    let join = server.post_json(&bob, &format!("/api/v1/channels/{channel}/join"), json!({})).await;
    assert_eq!(join.status(), 204);
    let slow = || trickle(b"x".to_vec(), Duration::from_secs(29));
    let first = {
        let (server_url, token, channel) = (server.url(""), alice.bearer(), channel.clone());
        let client = server.client();
        let (content_type, _) = form("x.txt", b"");
        tokio::spawn(async move {
            client
                .post(format!("{server_url}/api/v1/channels/{channel}/files"))
                .headers(token)
                .header("content-type", content_type)
                .body(slow())
                .send()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    let second = upload_body(&server, &alice, &channel, &trickle_type(), slow()).await;
    assert_eq!(header(&second, "retry-after"), "5");
    let body = expect_error(second, 429, "too_many_requests").await;
    assert!(body["error"]["message"].as_str().expect("message").contains("1 uploads in progress"), "{body}");
    let bobs = upload(&server, &bob, &channel, "bob.txt", b"hello from bob\n").await;
    assert_eq!(bobs.status(), 201, "{}", bobs.text().await.unwrap_or_default());
    first.abort();
}

/// Issue 16 item 7: an upload slower than the minimum rate (after its grace window) is cut off
/// with 408 and its JSON error delivered, over HTTP/2 and HTTP/1.1; an honest upload at a
/// modest, steady rate is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_a_trickling_upload_is_cut_off_with_its_error_delivered() {
    let server =
        server_with("[files]\nscanning = false\nupload_rate_min_bytes_per_sec = 1024\nupload_rate_window_ms = 1000\n");
    let alice = server.user("member").await;
    let channel = server.channel(&alice, "public").await;
    let started = Instant::now();
    let every = Duration::from_millis(200);
    let cut = upload_body(&server, &alice, &channel, &trickle_type(), trickle(b"x".to_vec(), every)).await;
    let body = expect_error(cut, 408, "request_timeout").await;
    assert!(body["error"]["message"].as_str().expect("message").contains("1024 bytes per second"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());

    let mut tls = rustls_client(&[server.ca_pem()], &[&rustls::version::TLS13]);
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let http1 = reqwest::Client::builder().use_preconfigured_tls(tls).http1_only().build().expect("client");
    let (content_type, _) = form("x.txt", b"");
    let cut = http1
        .post(server.url(&format!("/api/v1/channels/{channel}/files")))
        .headers(alice.bearer())
        .header("content-type", content_type)
        .body(trickle(b"x".to_vec(), Duration::from_millis(200)))
        .send()
        .await
        .expect("an answer over HTTP/1.1");
    expect_error(cut, 408, "request_timeout").await;

    // 512 bytes every 250 ms (2 KiB/s, twice the minimum) for over 3 s, then the end: slow, but
    // honest.
    let data = text_file(6 * 1024);
    let (content_type, body) = form("steady.txt", &data);
    let pieces: Vec<Vec<u8>> = body.chunks(512).map(<[u8]>::to_vec).collect();
    let steady = futures_util::stream::unfold(pieces.into_iter(), |mut pieces| async move {
        tokio::time::sleep(Duration::from_millis(250)).await;
        pieces.next().map(|piece| (Ok::<_, std::io::Error>(piece), pieces))
    });
    let response = upload_body(&server, &alice, &channel, &content_type, reqwest::Body::wrap_stream(steady)).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap_or_default());
}
